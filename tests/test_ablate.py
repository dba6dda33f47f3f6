"""The levers' arms (experiments.ablate): a distilled arm distils, then trains from it; the levers table's
arithmetic."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from experiments import ablate
from segformer import load_checkpoint
from train.paths import DATASETS_DIR as DATASETS
from train.prepare import prepare


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """8 train and 8 val images of MSRC-v2 and of feral-cats, short side 64."""
    root = tmp_path_factory.mktemp("data")
    prepare(root / "msrc", 64, {"msrc-v2": DATASETS / "msrc-v2"}, limit=8, workers=1)
    prepare(root / "cats", 64, {"feral-cats": DATASETS / "feral-cats"}, limit=8, workers=1)
    return root / "msrc", root / "cats"


def test_a_distilled_arm_distils_first_then_trains_from_the_distilled_encoder(
    tiny_sources: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three, cats = tiny_sources
    monkeypatch.setattr(ablate, "THREE_SOURCES", str(three))
    monkeypatch.setattr(ablate, "FERAL_CATS", str(cats))
    monkeypatch.setattr(ablate, "RESULTS", tmp_path / "results")
    tiny = ["--recipe", "scratch", "--data", str(three), "--epochs", "1", "--crop-size", "64", "--batch-size", "4"]
    monkeypatch.setitem(ablate.PROTOCOLS, "tiny", tiny)
    distill = ("--data", str(three), "--epochs", "1", "--crop-size", "64", "--batch-size", "4")
    arm = ablate.Arm("tiny-distilled", "levers: test", "tiny", distill=distill)
    runs = tmp_path / "runs"

    line = ablate.run_one(arm, 3, runs)

    assert line.startswith("tiny-distilled-s3: val mIoU"), line
    _, meta = load_checkpoint(runs / "tiny-distilled-s3" / "last")
    assert meta["recipe"]["init"] == str(runs / "tiny-distilled-s3-distill" / "last")
    assert ablate.distilled(arm, 3, runs)["recipe"]["seed"] == 3
    summary = json.loads((tmp_path / "results" / "tiny-distilled-s3.json").read_text())
    assert summary["distill_flags"] == list(distill)
    assert summary["seconds"]["distillation"] > 0 and summary["seconds"]["training"] > 0
    scores = summary["scores"]
    assert scores["three_sources"]["miou"] == pytest.approx(meta["history"][-1]["val_miou"])  # the same val split
    assert 0 <= scores["feral_cats"]["cat_iou"] <= 1 and 0 <= scores["feral_cats"]["outside_admissible"] <= 1
    # A rerun finds both steps done and only rewrites the summary.
    assert ablate.run_one(arm, 3, runs) == line


def summary(arm: str, miou: float, person: float, cat: float | None, seconds: float | None) -> dict:
    per_class = {"background": 0.9, "plant": 0.7, "person/animal": person, "vehicle": 0.5}
    result = {"arm": arm, "history": [{"val_miou": miou, "val_per_class_iou": per_class}]}
    if cat is not None:
        result["scores"] = {
            "three_sources": {"miou": miou, "per_class_iou": per_class},
            "feral_cats": {"cat_iou": cat, "outside_admissible": 0.1},
        }
    if seconds is not None:
        result["seconds"] = {"distillation": seconds / 2, "training": seconds / 2}
    return result


def test_levers_table_gives_mean_range_and_the_difference_judged_by_the_seed_spread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ablate, "RESULTS", tmp_path)
    arms = [
        summary("base", 0.70, 0.50, None, None),  # an older summary: history only, no cat IoU
        summary("base", 0.72, 0.54, None, None),
        summary("lever", 0.76, 0.60, 0.40, 600),
        summary("lever", 0.80, 0.62, 0.50, 1200),
    ]
    for index, result in enumerate(arms):
        (tmp_path / f"{index}.json").write_text(json.dumps(result))

    rows = ablate.levers_table([("base", "lever", "absent"), ("lever", "base")]).splitlines()[2:]

    assert rows[0].split(" | ")[1:4] == ["0.710 (0.700-0.720)", "", "0.520 (0.500-0.540)"]
    lever = rows[1].split(" | ")
    # mean 0.78 - 0.71 = +0.07; spread: the wider range, 0.80 - 0.76 = 0.04 -> outside.
    assert lever[1:7] == [
        "0.780 (0.760-0.800)",
        "+0.070 (outside the seed spread 0.040) vs base",
        "0.610 (0.600-0.620)",
        "0.500 (0.500-0.500)",
        "0.450 (0.400-0.500)",
        "15 min",
    ]
    assert "not run yet" in rows[2]
    # A reference already in the table is not repeated; its group's arms are judged against it.
    assert len(rows) == 4 and rows[3].split(" | ")[2] == "-0.070 (outside the seed spread 0.040) vs lever"


def test_arms_naming_one_encoder_share_its_distillation_and_keep_it_frozen(
    tiny_sources: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    three, cats = tiny_sources
    monkeypatch.setattr(ablate, "THREE_SOURCES", str(three))
    monkeypatch.setattr(ablate, "FERAL_CATS", str(cats))
    monkeypatch.setattr(ablate, "RESULTS", tmp_path / "results")
    # A protocol whose --init names no file: the run only works if the distilled encoder takes its place.
    frozen = ["--data", str(three), "--epochs", "1", "--crop-size", "64", "--batch-size", "4",
              "--init", str(tmp_path / "absent"), "--init-encoder-only", "--freeze-encoder"]  # fmt: skip
    monkeypatch.setitem(ablate.PROTOCOLS, "tiny-frozen", frozen)
    distill = ("--data", str(three), "--epochs", "1", "--crop-size", "64", "--batch-size", "4")
    mlp = ablate.Arm("tiny-mlp", "Q7 (test)", "tiny-frozen", distill=distill, encoder="tiny-encoder")
    fpn = ablate.Arm("tiny-fpn", "Q7 (test)", "tiny-frozen", ablate.FPN, distill=distill, encoder="tiny-encoder")
    runs = tmp_path / "runs"

    with ThreadPoolExecutor(2) as pool:  # in parallel, as `ablate run --jobs 2` runs them
        lines = list(pool.map(lambda arm: ablate.run_one(arm, 5, runs), (mlp, fpn)))

    assert lines[0].startswith("tiny-mlp-s5: val mIoU") and lines[1].startswith("tiny-fpn-s5: val mIoU"), lines
    assert capsys.readouterr().out.count(": distilling") == 1  # one distillation, the other arm waited for it
    assert sorted(p.name for p in runs.glob("*-distill")) == ["tiny-encoder-s5-distill"]
    encoder, _ = load_checkpoint(runs / "tiny-encoder-s5-distill" / "last")
    for arm, decoder in (("tiny-mlp", "all_mlp"), ("tiny-fpn", "fpn")):
        model, meta = load_checkpoint(runs / f"{arm}-s5" / "last")
        assert meta["recipe"]["init"] == str(runs / "tiny-encoder-s5-distill" / "last")
        assert meta["config"]["decoder"] == decoder
        trained, distilled = model.encoder.state_dict(), encoder.encoder.state_dict()
        assert all(torch.equal(trained[k], distilled[k]) for k in distilled)  # the encoder never moved
