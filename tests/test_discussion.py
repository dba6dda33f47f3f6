"""The measurements behind docs/DISCUSSION.md, on real validation images: receptive fields, bands, tables."""

from dataclasses import replace
from pathlib import Path

import matplotlib
import pytest
import torch
from conftest import IN_CI
from PIL import Image

from experiments import discussion, tables
from segformer import SegFormer, load_checkpoint, predict, preset
from segformer.predict import class_argmax
from task.classes import CLASS_NAMES
from train.data import SegmentationFolder
from train.paths import DATASETS_DIR

ROOT = Path(__file__).resolve().parents[1]
SIFT_FLOW = DATASETS_DIR / "sift-flow"  # 256 x 256 images: ERF crops need no resize


@pytest.fixture(scope="module")
def sift_flow_val() -> SegmentationFolder:
    return SegmentationFolder(SIFT_FLOW, "val")


def test_erf_of_a_convolution_encoder_stays_inside_its_receptive_field_and_attention_reaches_beyond(
    sift_flow_val: SegmentationFolder,
) -> None:
    # Stage 1 of the dwconv encoder: the 7x7 stride-4 patch embedding (3 px either side of a token's centre), then
    # two blocks of a 7x7 depthwise mixer (3 tokens) and Mix-FFN's 3x3 depthwise conv (1 token): 8 tokens = 32 px.
    # So the centre token's gradient is zero farther than 35 px from its centre, pixel 4 * 32 = 128.
    torch.manual_seed(0)
    conv = SegFormer(replace(preset("b0"), token_mixer="dwconv"), len(CLASS_NAMES))
    attention = SegFormer(preset("b0"), len(CLASS_NAMES))
    crops = discussion.centre_crops(sift_flow_val, discussion.ERF_IMAGES)
    assert len(crops) == discussion.ERF_IMAGES and all(c.shape == (3, 256, 256) for c in crops)
    conv_maps = discussion.erf_maps(conv, crops)
    attention_maps = discussion.erf_maps(attention, crops)
    for maps in (conv_maps, attention_maps):
        torch.testing.assert_close(maps.sum((1, 2)), torch.ones(4))
    inside = torch.zeros(256, 256, dtype=torch.bool)
    inside[128 - 35 : 128 + 36, 128 - 35 : 128 + 36] = True
    assert conv_maps[0][~inside].sum() == 0 and conv_maps[0][inside].sum() > 0.99
    assert attention_maps[0][~inside].sum() > 0.05  # efficient attention sees the whole image from stage 1
    assert discussion.mass_radius(conv_maps[0], 0.9) <= 35 < discussion.mass_radius(attention_maps[0], 0.9)


def test_mass_radius_and_border_band_by_hand() -> None:
    erf = torch.zeros(9, 9)
    erf[4, 4], erf[4, 6], erf[0, 0] = 0.5, 0.3, 0.2
    assert [discussion.mass_radius(erf, share) for share in (0.5, 0.79, 0.81, 1.0)] == [0, 2, 4, 4]
    band = discussion.border_band(16, 24)  # an eighth of 16: 2 pixels
    assert band.sum() == 16 * 24 - 12 * 20 and not band[2:14, 2:22].any() and band[:2].all() and band[:, -2:].all()


def test_probabilities_at_scale_one_predict_as_the_prediction_path(sift_flow_val: SegmentationFolder) -> None:
    model, _ = load_checkpoint(ROOT / "checkpoints" / "segformer-b0-4class")
    image, _ = sift_flow_val[3]
    image = image.as_subclass(torch.Tensor)
    with torch.inference_mode():
        ours = class_argmax(discussion.probabilities(model, image))[0]
        flipped = discussion.probabilities(model, image.flip(-1), flip=True)
    assert torch.equal(ours.to(torch.uint8), predict(model, image))
    # Mirroring the input and un-mirroring the output equals the unmirrored prediction up to float rounding.
    assert (class_argmax(flipped)[0] == ours).double().mean() > 0.999


def test_fill_tables_rewrites_only_the_marked_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(discussion.TABLES, "demo", lambda: "| a |\n|---|\n| 1 |")
    text = "intro\n<!-- table:demo -->\nold\nrows\n<!-- /table -->\noutro <!-- table:demo --><!-- /table -->\n"
    filled = discussion.fill_tables(text)
    assert filled == (
        "intro\n<!-- table:demo -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\n"
        "outro <!-- table:demo -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\n"
    )
    assert discussion.fill_tables(filled) == filled
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        discussion.fill_tables("<!-- table:nope --><!-- /table -->")


def test_spearman_and_the_noise_verdict_by_hand() -> None:
    assert discussion.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1
    assert discussion.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1
    assert discussion.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(1 - 6 * 4 / 120)
    assert tables.verdict([0.50, 0.52], [0.40, 0.41]) == "+0.105 (outside the seed spread 0.020)"
    assert tables.verdict([0.40, 0.44], [0.41, 0.42]) == "+0.005 (inside the seed spread 0.040)"
    assert tables.spread([0.4, 0.5]) == "0.450 (0.400-0.500)"


def test_paired_differences_and_their_verdict_by_hand() -> None:
    # Seed 2 has no reference run, so it is left out; the differences come in seed order.
    assert tables.paired_differences({1: 0.60, 0: 0.50, 2: 0.70}, {0: 0.40, 1: 0.45}) == pytest.approx([0.10, 0.15])
    assert tables.paired_verdict([0.10, 0.15]) == "+0.100 / +0.150: mean +0.125, spread 0.050, holds"
    # Same sign, but the mean (0.03) is not larger than the spread (0.04).
    assert tables.paired_verdict([0.01, 0.05]) == "+0.010 / +0.050: mean +0.030, spread 0.040, inside the noise"
    assert tables.paired_verdict([0.01, -0.02]) == "+0.010 / -0.020: mean -0.005, spread 0.030, inside the noise"
    assert tables.paired_verdict([-0.02]) == "-0.020 (1 seed: too few to judge)" and tables.paired_verdict([]) == ""
    assert not tables.paired_holds([0.02]) and tables.paired_holds([-0.03, -0.02, -0.025])
    # A seed that lifts both arms alike (+0.10) is noise to the unpaired test and cancels in the paired one.
    arm, reference = {0: 0.31, 1: 0.41}, {0: 0.30, 1: 0.40}
    assert tables.verdict(list(arm.values()), list(reference.values())) == "+0.010 (inside the seed spread 0.100)"
    assert tables.paired_verdict(tables.paired_differences(arm, reference)).endswith("spread 0.000, holds")


def test_pairs_table_from_seed_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(seed: int, miou: float, person: float) -> dict:
        classes = {"background": 0.8, "plant": 0.4, "person/animal": person, "vehicle": None}
        return {"seed": seed, "history": [{"val_miou": miou, "val_per_class_iou": classes}]}

    results = {"a": [run(1, 0.42, 0.2), run(0, 0.33, 0.1)], "ref": [run(0, 0.30, 0.0), run(1, 0.40, 0.0)]}
    monkeypatch.setattr(discussion, "arm_results", lambda: results)
    rows = discussion.pairs_table([("a", "ref", "Q0"), ("b", "ref", "Q0")]).splitlines()[2:]
    assert rows == [
        "| a | ref | Q0 | +0.025 (inside the seed spread 0.100) | +0.030 / +0.020: mean +0.025, spread 0.010, holds "
        "| 0.10 / 0.20 | 0.00 / 0.00 |",
        "| b | ref | Q0 | not run yet |  |  |  |",
    ]


def test_decoder_macs_by_hand() -> None:
    # The FPN decoder at C = 96 for B0 (widths 32, 64, 160, 256) at 512x512, the stages 128, 64, 32 and 16 per side:
    # a 1x1 lateral per stage, a 3x3 smoothing per level and the 4-class classifier at 1/4 (sums are not counted).
    sides, widths = (128, 64, 32, 16), (32, 64, 160, 256)
    laterals = sum(c * 96 * side**2 for c, side in zip(widths, sides, strict=True))
    smoothing = sum(96 * 96 * 9 * side**2 for side in sides)
    decoder, whole = discussion.macs({"decoder": "fpn", "decoder_dim": 96})
    assert decoder == laterals + smoothing + 96 * 4 * 128**2 == 1_908_670_464
    assert whole - decoder == discussion.macs({})[1] - discussion.macs({})[0]  # the same encoder under both


# The figures' code hands torch tensors to matplotlib's imshow, which under numpy 2 calls np.array(x, copy=...): numpy
# warns that torch's Tensor.__array__ takes no copy keyword, then copies anyway, so the pixels are the same. Only
# that warning is silenced here; the redrawn figures are still compared byte for byte.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_report_rebuilds_the_committed_page_and_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's tables are those the committed results give, and the figures redraw byte for byte under the
    matplotlib version that drew them, which each PNG records. Under another version the figure check is skipped,
    and under CI=true it fails, naming the version the figures need."""
    monkeypatch.chdir(tmp_path)  # the paths are the repository's, not the working directory's
    text = discussion.DOC.read_text()
    assert discussion.fill_tables(text) == text
    for name, draw in discussion.FIGURES_MADE.items():
        committed = discussion.FIGURES / name
        drawn_by = Image.open(committed).info.get("Software", "")
        if f"version{matplotlib.__version__}," not in drawn_by:
            reason = (
                f"{committed.name} was drawn by {drawn_by!r}, not matplotlib {matplotlib.__version__}: install that "
                "version, or redraw the figures (python -m experiments.discussion report) and commit them"
            )
            if IN_CI:
                pytest.fail(f"{reason} (CI=true: this check may not be skipped)", pytrace=False)
            pytest.skip(reason)
        draw(tmp_path / name)
        assert (tmp_path / name).read_bytes() == committed.read_bytes(), name
