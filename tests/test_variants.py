"""The config's ablation variants: each builds, has the size its formula says, keeps the paper's model as the default
bit for bit, survives a checkpoint round trip, and does what its docstring claims."""

import json
import math
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from test_transformers_weights import check_eval_equivalence, hf_config, randomise, transfer
from transformers import SegformerForSemanticSegmentation

from segformer import MiTConfig, SegFormer, load_checkpoint, preset, save_checkpoint
from segformer.checkpoint import checkpoint_paths
from segformer.fpn_decoder import upsample2x
from segformer.mix_ffn import MixFFN
from segformer.model import reference_init, swap_ffn_padding
from segformer.overlap_patch_merging import PatchMerging, grid_to_tokens
from segformer.token_mixer import DepthwiseConvMixer
from segformer.transformers_weights import convert_state_dict

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "segformer-b0-4class"
B0 = preset("b0")
WIDTHS, DEPTHS = B0.widths, B0.depths  # (32, 64, 160, 256), (2, 2, 2, 2)
VARIANTS = {
    "non_overlap": {"patch_merging": "non_overlap"},
    "max_pool": {"patch_merging": "max_pool"},
    "full_attention": {"sr_ratios": (1, 1, 1, 1)},
    "no_ffn_activation": {"ffn_activations": 0},
    "two_ffn_activations": {"ffn_activations": 2},
    "replicate_padding": {"ffn_padding": "replicate"},
    "reflect_padding": {"ffn_padding": "reflect"},
    "dwconv_mixer": {"token_mixer": "dwconv"},
    "dwconv_mixer_matched": {"token_mixer": "dwconv", "mlp_ratio": 6.5},  # Q6's conv arm at the paper's size
    "fpn": {"decoder": "fpn", "decoder_dim": 96},
}
PAPER = {"patch_merging": "overlap", "ffn_activations": 1, "ffn_padding": "zeros", "token_mixer": "attention"}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def b0(seed: int = 0, **changes: object) -> SegFormer:
    torch.manual_seed(seed)
    return SegFormer(replace(B0, **changes), 4)


# ---- the paper's model is the default -----------------------------------------------------------------------------


def test_every_variant_field_defaults_to_the_paper() -> None:
    defaults = {f.name: f.default for f in fields(MiTConfig)}
    assert {k: defaults[k] for k in PAPER} == PAPER
    assert defaults["decoder"] == "all_mlp" and B0.sr_ratios == (8, 4, 2, 1)


def test_the_default_model_has_the_published_weight_layout(tmp_path: Path) -> None:
    """Exactly the keys and shapes of transformers' B0 as published on the Hub (save_pretrained), converted to our
    names: no key added, dropped or reshaped by the variants' code (the equivalence of the outputs for the same weights
    is tests/test_transformers_weights.py)."""
    SegformerForSemanticSegmentation(hf_config("b0", 4)).save_pretrained(tmp_path)
    published = convert_state_dict(load_file(tmp_path / "model.safetensors"))
    ours = b0().state_dict()
    ours_trainable = {k: tuple(v.shape) for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    assert ours_trainable == {k: tuple(v.shape) for k, v in published.items() if not k.endswith("num_batches_tracked")}


def test_full_attention_matches_transformers_with_sr_ratio_1(tmp_path: Path) -> None:
    """sr_ratios (1, 1, 1, 1): keys and values from every token (Eq. 1 without Eq. 2), as transformers' sr_ratio 1."""
    config = hf_config("b0", 5)
    config.sr_ratios = [1, 1, 1, 1]
    theirs = randomise(SegformerForSemanticSegmentation(config), seed=8).eval()
    ours = transfer(theirs, tmp_path).eval()
    assert ours.config.sr_ratios == (1, 1, 1, 1)
    check_eval_equivalence(ours, theirs, (97, 75), seed=9)


def test_the_shipped_checkpoint_is_the_papers_b0() -> None:
    """Its JSON config names every variant field with the paper's value, and it loads as the paper's B0."""
    stored = json.loads(checkpoint_paths(CHECKPOINT)[1].read_text())["config"]
    assert {name: stored[name] for name in PAPER} == PAPER and stored["decoder"] == "all_mlp"
    model, _ = load_checkpoint(CHECKPOINT)
    assert model.config == B0


def test_an_old_checkpoint_without_the_variant_fields_loads(tmp_path: Path) -> None:
    model = b0().eval()
    save_checkpoint(tmp_path / "old", model, {})
    meta_path = checkpoint_paths(tmp_path / "old")[1]
    meta = json.loads(meta_path.read_text())
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in {*PAPER, "decoder"}}
    meta_path.write_text(json.dumps(meta))
    loaded, _ = load_checkpoint(tmp_path / "old")
    assert loaded.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("field", "value"),
    [("patch_merging", "conv"), ("ffn_activations", 3), ("ffn_padding", "circular"), ("token_mixer", "pool"),
     ("decoder", "uper")],
)  # fmt: skip
def test_an_unknown_variant_is_a_value_error_naming_the_choices(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"unknown {field} {value!r}; expected one of"):
        replace(B0, **{field: value})


@pytest.mark.parametrize("ratio", [6.3, 0, -4])
def test_an_mlp_ratio_that_gives_no_whole_hidden_width_is_a_value_error(ratio: float) -> None:
    with pytest.raises(ValueError, match=f"mlp_ratio {ratio} must be positive and give whole hidden widths"):
        replace(B0, mlp_ratio=ratio)  # 32 x 6.3 = 201.6 channels


# ---- every variant: shapes, training, checkpoints -----------------------------------------------------------------


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, SegFormer]:
    return request.param, b0(**VARIANTS[request.param]).eval()


@pytest.mark.parametrize("size", [(97, 75), (33, 35), (64, 64)])
def test_every_variant_gives_features_at_the_paper_strides_and_logits_at_a_quarter(
    variant: tuple[str, SegFormer], size: tuple[int, int]
) -> None:
    _, model = variant
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features, _ = model.encoder(x)
        logits = model(x)
    for stage, (feature, width) in enumerate(zip(features, WIDTHS, strict=True)):
        stride = 4 * 2**stage
        assert feature.shape == (2, width, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert logits.shape == (2, 4, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert torch.isfinite(logits).all()


def test_every_variant_trains_every_parameter(variant: tuple[str, SegFormer]) -> None:
    name, _ = variant
    model = b0(**{**VARIANTS[name], "drop_path": 0.0}).train()
    x, target = torch.randn(2, 3, 64, 96), torch.randint(0, 4, (2, 16, 24))
    F.cross_entropy(model(x), target).backward()
    # Zero in exact arithmetic (tests/test_model.py): q . b_k is the same for every key (softmax ignores it), and
    # train-mode BatchNorm removes a constant added before it: the All-MLP decoder's per-stage biases, the FPN's
    # smoothing biases (not its lateral ones: the smoothing convolutions' zero padding makes those non-constant).
    vanishing = ("attention.key.bias", "decoder.linear.", "decoder.smooth.")
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {param_name}"
        size = param.grad.abs().max().item()
        if param_name.endswith("bias") and any(part in param_name for part in vanishing):
            assert size < 1e-5, f"{name}: {param_name}: gradient {size} should vanish"
        else:
            assert size > 0, f"{name}: {param_name} gets no gradient"


def test_every_variant_round_trips_through_a_checkpoint(variant: tuple[str, SegFormer], tmp_path: Path) -> None:
    name, model = variant
    save_checkpoint(tmp_path / name, model, {"classes": ["a", "b", "c", "d"]})
    stored = json.loads(checkpoint_paths(tmp_path / name)[1].read_text())["config"]
    for field, value in VARIANTS[name].items():
        assert stored[field] == (list(value) if isinstance(value, tuple) else value)
    loaded, _ = load_checkpoint(tmp_path / name)
    assert loaded.config == model.config
    x = torch.randn(1, 3, 97, 75)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# ---- parameter counts (B0, 4 classes) ------------------------------------------------------------------------------
# The paper's SegFormer-B0 for 4 classes has 3,715,172 parameters: 3,319,392 in MiT-B0, 395,780 in the decoder.
# Each variant's difference from it is worked out below from the layers' shapes, stage by stage.


def merging_weights(kernels: tuple[int, ...]) -> int:
    """Weights of the four patch-merging convolutions (biases and norms do not change): C_in * C_out * k^2."""
    channels = (3, *WIDTHS[:-1])
    return sum(c_in * c_out * k * k for c_in, c_out, k in zip(channels, WIDTHS, kernels, strict=True))


def attention_params(width: int, sr_ratio: int) -> int:
    """Query, key, value, output Linears (4 (C^2 + C)), plus the R x R reduction conv and its LayerNorm if R > 1."""
    reduction = width * width * sr_ratio**2 + width + 2 * width if sr_ratio > 1 else 0
    return 4 * (width * width + width) + reduction


def test_the_paper_b0_size() -> None:
    assert count(b0()) == 3_715_172
    assert count(b0().decoder) == 395_780  # 512 C + 4 C (Linears) + 4 C^2 (fuse) + 2 C (BN) + 4 C + 4, C = 256


@pytest.mark.parametrize(
    ("name", "change"),
    [
        # Kernels 7, 3, 3, 3 become the strides 4, 2, 2, 2: 3*32*(16-49) + (32*64 + 64*160 + 160*256) * (4-9).
        ("non_overlap", merging_weights((4, 2, 2, 2)) - merging_weights((7, 3, 3, 3))),
        # 1x1 projections after the pooling: 3*32*(1-49) + (32*64 + 64*160 + 160*256) * (1-9).
        ("max_pool", merging_weights((1, 1, 1, 1)) - merging_weights((7, 3, 3, 3))),
        # No reduction conv (C^2 R^2 + C) nor its LayerNorm (2 C) in the 2 blocks of stages 1-3.
        ("full_attention", -2 * sum(c * c * r * r + 3 * c for c, r in zip(WIDTHS[:3], (8, 4, 2), strict=True))),
        ("no_ffn_activation", 0),
        ("two_ffn_activations", 0),
        ("replicate_padding", 0),
        ("reflect_padding", 0),
        # Per block, the attention gives way to a 7x7 depthwise conv (49 C + C) and a pointwise Linear (C^2 + C).
        (
            "dwconv_mixer",
            sum(
                depth * (49 * c + c + c * c + c - attention_params(c, r))
                for c, depth, r in zip(WIDTHS, DEPTHS, B0.sr_ratios, strict=True)
            ),
        ),
        # The dwconv mixer with Mix-FFN's hidden width H from 4 C to 6.5 C: (2 C + 11) per unit of H (fc1 and fc2
        # weights, their biases, the 3x3 depthwise conv's 9 weights and bias) puts back all but 7,168 parameters.
        (
            "dwconv_mixer_matched",
            sum(
                depth * (49 * c + c + c * c + c - attention_params(c, r) + int(2.5 * c) * (2 * c + 11))
                for c, depth, r in zip(WIDTHS, DEPTHS, B0.sr_ratios, strict=True)
            ),
        ),
        # FPN at C = 96: laterals 512 C + 4 C, smoothing 4 (9 C^2 + C), BN 2 C, classifier 4 C + 4 = 382,276.
        ("fpn", 36 * 96**2 + 526 * 96 + 4 - 395_780),
    ],
)
def test_parameter_count_of_each_variant(name: str, change: int) -> None:
    with torch.device("meta"):
        model = SegFormer(replace(B0, **VARIANTS[name]), 4)
    assert count(model) - 3_715_172 == change
    stated = {  # the numbers above, evaluated: what the report quotes
        "non_overlap": -269_408,
        "max_pool": -430_592,
        "full_attention": -468_480,
        "dwconv_mixer": -997_888,
        "dwconv_mixer_matched": -7_168,
        "fpn": -13_504,
    }
    assert change == stated.get(name, 0)


def test_variants_that_change_no_shape_keep_the_papers_weight_layout() -> None:
    paper = {k: v.shape for k, v in b0().state_dict().items()}
    for name in ("no_ffn_activation", "two_ffn_activations", "replicate_padding", "reflect_padding"):
        assert {k: v.shape for k, v in b0(**VARIANTS[name]).state_dict().items()} == paper, name


def test_the_fpn_at_the_papers_width_would_be_six_times_the_all_mlp_decoder() -> None:
    """Why the FPN's width is 96 for B0: at 256 it holds 36 * 256^2 + 526 * 256 + 4 = 2,493,956 parameters."""
    with torch.device("meta"):
        wide = SegFormer(replace(B0, decoder="fpn"), 4)
    assert count(wide.decoder) == 2_493_956


# ---- Q1: patch merging --------------------------------------------------------------------------------------------


def test_non_overlapping_merging_pads_the_bottom_and_right_with_zeros() -> None:
    torch.manual_seed(0)
    merge = PatchMerging(3, 8, patch_size=7, stride=4, kind="non_overlap")
    x = torch.randn(1, 3, 97, 75)
    tokens, height, width = merge(x)
    assert (height, width) == merge.grid_size(97, 75) == (25, 19)
    padded = F.pad(x, (0, 1, 0, 3))  # to 100 x 76, multiples of 4
    reference = F.conv2d(padded, merge.proj.weight, merge.proj.bias, stride=4)
    torch.testing.assert_close(tokens, merge.norm(grid_to_tokens(reference)))


def test_non_overlapping_patches_see_only_their_own_pixels() -> None:
    """A pixel changes the one token whose 4x4 patch holds it; with the paper's 7x7 kernels it changes its neighbours
    too (the local continuity that overlapping merging keeps, PVT v2)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    bumped = x.clone()
    bumped[0, :, 3, 3] += 1.0  # the last pixel of patch (0, 0), under the 7x7 kernels of tokens (0..1, 0..1)
    for kind, changed in (("non_overlap", {(0, 0)}), ("overlap", {(0, 0), (0, 1), (1, 0), (1, 1)})):
        merge = PatchMerging(3, 8, patch_size=7, stride=4, kind=kind)
        with torch.no_grad():
            diff = (merge(bumped)[0] - merge(x)[0]).abs().amax(-1).view(8, 8)
        assert {tuple(i) for i in (diff > 0).nonzero().tolist()} == changed, kind


def test_max_pool_merging_pools_partial_windows_over_the_pixels_they_have() -> None:
    torch.manual_seed(0)
    merge = PatchMerging(3, 8, patch_size=7, stride=4, kind="max_pool")
    x = torch.randn(1, 3, 97, 75) - 10.0  # all negative: zero padding would win every partial window
    tokens, height, width = merge(x)
    assert (height, width) == merge.grid_size(97, 75) == (25, 19)
    pooled = F.max_pool2d(F.pad(x, (0, 1, 0, 3), value=float("-inf")), 4)
    torch.testing.assert_close(tokens, merge.norm(grid_to_tokens(merge.proj(pooled))))


# ---- Q2: full attention -------------------------------------------------------------------------------------------


def test_full_attention_attends_from_every_token_to_every_token_at_any_size() -> None:
    model = b0(**VARIANTS["full_attention"]).eval()
    with torch.no_grad():
        logits, attentions = model(torch.randn(1, 3, 97, 75), return_attentions=True)
        tiny = model(torch.randn(1, 3, 5, 7))  # no reduction: no smallest size but one pixel
    grids = [(25, 19), (13, 10), (7, 5), (4, 3)]
    for stage, (h, w) in enumerate(grids):
        assert attentions[stage][0].shape == (1, B0.heads[stage], h * w, h * w)
    assert tiny.shape == (1, 4, 2, 2)


# ---- Q3, Q4: Mix-FFN ----------------------------------------------------------------------------------------------


def mix_ffn_reference(ffn: MixFFN, x: torch.Tensor, height: int, width: int, activations: int, padding: str):
    """Eq. 3 in plain operations on an NCHW map: fc1, [GELU], pad + 3x3 depthwise conv, [GELU], fc2."""
    hidden = x @ ffn.fc1.weight.T + ffn.fc1.bias
    if activations == 2:
        hidden = F.gelu(hidden)
    grid = hidden.transpose(1, 2).reshape(x.shape[0], -1, height, width).contiguous()
    mode = "constant" if padding == "zeros" else padding
    grid = F.conv2d(F.pad(grid, (1, 1, 1, 1), mode=mode), ffn.dwconv.weight, ffn.dwconv.bias, groups=grid.shape[1])
    hidden = grid.flatten(2).transpose(1, 2)
    if activations >= 1:
        hidden = F.gelu(hidden)
    return hidden @ ffn.fc2.weight.T + ffn.fc2.bias


@pytest.mark.parametrize("activations", [0, 1, 2])
@pytest.mark.parametrize("padding", ["zeros", "replicate", "reflect"])
def test_mix_ffn_variants_follow_eq_3(activations: int, padding: str) -> None:
    torch.manual_seed(0)
    ffn = MixFFN(16, 64, activations=activations, padding=padding)
    x = torch.randn(2, 7 * 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x, 7, 5), mix_ffn_reference(ffn, x, 7, 5, activations, padding))


def test_without_its_activation_the_mix_ffn_is_affine() -> None:
    torch.manual_seed(0)
    ffn = MixFFN(16, 64, activations=0)
    x, y = torch.randn(2, 2, 35, 16)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x + 2 * y, 7, 5) - ffn(x, 7, 5), 2 * (ffn(y, 7, 5) - ffn(0 * y, 7, 5)))


@pytest.mark.parametrize(("padding", "uniform"), [("zeros", False), ("replicate", True), ("reflect", True)])
def test_only_zero_padding_tells_a_token_where_the_border_is(padding: str, uniform: bool) -> None:
    """The same feature everywhere: replicate and reflect padding keep every token equal (no position information);
    zero padding makes the border tokens differ (Islam et al. 2020)."""
    torch.manual_seed(0)
    ffn = MixFFN(16, 64, padding=padding)
    x = torch.randn(1, 1, 16).expand(1, 6 * 6, 16)
    with torch.no_grad():
        out = ffn(x, 6, 6)
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6) == uniform


def test_swapping_the_padding_of_a_trained_model_is_building_it_with_that_padding(tmp_path: Path) -> None:
    model = b0().eval()
    x = torch.randn(1, 3, 97, 75)
    with torch.no_grad():
        paper = model(x)
        swap_ffn_padding(model, "replicate")
        swapped = model(x)
        built = b0(1, ffn_padding="replicate").eval()
        built.load_state_dict(model.state_dict())
        assert model.config == built.config
        assert torch.equal(swapped, built(x)) and not torch.allclose(swapped, paper)
        save_checkpoint(tmp_path / "swapped", model, {})  # the checkpoint says how it now runs
        assert load_checkpoint(tmp_path / "swapped")[0].config.ffn_padding == "replicate"
        assert torch.equal(swap_ffn_padding(model, "zeros")(x), paper)
    with pytest.raises(ValueError, match="unknown ffn_padding 'circular'"):
        swap_ffn_padding(model, "circular")


def test_reflect_padding_needs_two_cells_in_the_last_stage() -> None:
    """Reflecting a 1-cell side is undefined, so B0 with reflect padding needs 33 pixels (ceil(33 / 32) = 2), not 29."""
    model = b0(**VARIANTS["reflect_padding"]).eval()
    with pytest.raises(ValueError, match="32x40 pixels is too small: .*reflect padding.* at least 33x33"):
        model(torch.zeros(1, 3, 32, 40))


# ---- Q6: the token mixer ------------------------------------------------------------------------------------------


def test_the_dwconv_mixer_sees_a_7x7_neighbourhood() -> None:
    torch.manual_seed(0)
    mixer = DepthwiseConvMixer(8)
    x = torch.randn(1, 12 * 12, 8)
    bumped = x.clone()
    bumped[0, 5 * 12 + 6] += 1.0  # token (5, 6)
    with torch.no_grad():
        diff = (mixer(bumped, 12, 12) - mixer(x, 12, 12)).abs().amax(-1).view(12, 12)
    rows, cols = (diff > 0).nonzero().T.tolist()
    assert (min(rows), max(rows), min(cols), max(cols)) == (2, 8, 3, 9)


def test_an_encoder_without_attention_refuses_to_return_attentions() -> None:
    model = b0(**VARIANTS["dwconv_mixer"]).eval()
    with pytest.raises(ValueError, match="return_attentions needs token_mixer='attention'"):
        model(torch.randn(1, 3, 64, 64), return_attentions=True)
    assert model(torch.randn(1, 3, 5, 7)).shape == (1, 4, 2, 2)  # no key reduction: any size


# ---- Q7: the decoder ----------------------------------------------------------------------------------------------


def test_the_fpn_top_down_upsampling_puts_each_coarse_cell_over_its_own_fine_cells() -> None:
    coarse = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
    assert upsample2x(coarse, torch.Size([3, 4]))[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4]]


def test_reference_init_reaches_the_fpn_classifier() -> None:
    model = reference_init(b0(**VARIANTS["fpn"]))
    assert model.decoder.classifier.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert asdict(model.config)["decoder"] == "fpn"
