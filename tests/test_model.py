"""The SegFormer model on its own: sizes against the paper, shapes, input errors, gradients, learning a real image."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, predict, preset
from segformer.model import reference_init
from segformer.predict import normalise
from task.classes import IGNORE_INDEX, lookup_table, read_classes_txt
from train.paths import DATASETS_DIR as DATASETS


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Published sizes: MiT-B0 encoder 3.3M (3.32M), SegFormer-B0..B5 with the 150-class ADE20K head (paper Table 1).
PUBLISHED_150 = {"b0": 3.75e6, "b1": 13.7e6, "b2": 27.5e6, "b3": 47.3e6, "b4": 64.1e6, "b5": 84.7e6}


def test_mit_b0_encoder_has_the_published_size() -> None:
    assert count(SegFormer.from_preset("b0", 150).encoder) == pytest.approx(3.32e6, rel=0.01)


@pytest.mark.parametrize("name", list(PUBLISHED_150))
def test_segformer_has_the_published_size(name: str) -> None:
    with torch.device("meta"):  # no memory, no init: only the shapes count
        model = SegFormer.from_preset(name, 150)
    assert count(model) == pytest.approx(PUBLISHED_150[name], rel=0.01)


@pytest.fixture(scope="module")
def b0() -> SegFormer:
    torch.manual_seed(0)
    return SegFormer.from_preset("b0", 5).eval()


@pytest.mark.parametrize("size", [(29, 29), (33, 47), (64, 64), (250, 333), (97, 31)])
def test_any_input_size_gives_logits_at_a_quarter_of_it(b0: SegFormer, size: tuple[int, int]) -> None:
    with torch.no_grad():
        logits = b0(torch.randn(2, 3, *size))
    assert logits.shape == (2, 5, math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert logits.is_contiguous() and torch.isfinite(logits).all()


def test_samples_of_a_batch_are_independent(b0: SegFormer) -> None:
    x = torch.randn(3, 3, 70, 90)
    with torch.no_grad():
        batched = b0(x)
        single = torch.cat([b0(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((3, 64, 64), torch.float32),
        ((1, 1, 64, 64), torch.float32),
        ((1, 4, 64, 64), torch.float32),
        ((1, 3, 1, 64, 64), torch.float32),
        ((1, 3, 64, 64), torch.uint8),
    ],
)
def test_wrong_input_is_a_value_error_that_says_what_was_expected(
    b0: SegFormer, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    with pytest.raises(ValueError, match=r"expected a float tensor of shape \(batch, 3, height, width\)") as err:
        b0(torch.zeros(shape, dtype=dtype))
    assert str(tuple(shape)) in str(err.value)


@pytest.mark.parametrize("size", [(1, 1), (28, 64), (64, 20)])
def test_too_small_input_is_a_value_error_naming_the_smallest_size(b0: SegFormer, size: tuple[int, int]) -> None:
    # Stage 1 (1/4 resolution) reduces keys by 8x8, so its grid needs at least 8 cells: inputs of at least 29.
    with pytest.raises(ValueError, match=rf"{size[0]}x{size[1]} pixels is too small.* at least 29x29"):
        b0(torch.zeros(1, 3, *size))


def test_gradients_reach_every_parameter_in_train_mode() -> None:
    torch.manual_seed(0)
    model = SegFormer(replace(preset("b0"), drop_path=0.0), 4).train()
    x, target = torch.randn(2, 3, 64, 96), torch.randint(0, 4, (2, 16, 24))
    F.cross_entropy(model(x), target).backward()
    # Two gradients are zero in exact arithmetic, so only rounding noise may be there:
    # * attention key biases: q . b_k is the same for every key, and softmax ignores a shift (Eq. 1);
    # * the decoder's per-stage Linear biases: in train mode BatchNorm subtracts the batch mean, which removes
    #   any constant added before it (Eq. 4's fuse layer is linear, so the biases only add a constant).
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        size = param.grad.abs().max().item()
        if name.endswith("attention.key.bias") or (name.startswith("decoder.linear.") and name.endswith(".bias")):
            assert size < 1e-5, f"{name}: gradient {size} should vanish"
        else:
            assert size > 0, f"{name} gets no gradient"


def load_msrc(stem: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One MSRC-v2 train image (uint8, 3 x size x size) and its label mapped to the 4 task classes.

    The image is resized to height ``size`` (keeping its 3:2 shape) and the centre square is kept.
    """
    root = DATASETS / "msrc-v2"
    lut = lookup_table(read_classes_txt(root / "classes.txt"), "msrc-v2")
    shape = (size * 3 // 2, size)
    with Image.open(root / "images" / "train" / f"{stem}.jpg") as im:
        rgb = np.asarray(im.convert("RGB").resize(shape, Image.BILINEAR))
    with Image.open(root / "labels" / "train" / f"{stem}.png") as lab:
        label = lut[np.asarray(lab.resize(shape, Image.NEAREST))]
    left = (shape[0] - size) // 2
    image = torch.from_numpy(rgb[:, left : left + size].copy()).permute(2, 0, 1)
    return image, torch.from_numpy(label[:, left : left + size].astype(np.int64))


def mean_iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean IoU over the classes present in ``target`` (ignored pixels excluded)."""
    valid = target != IGNORE_INDEX
    ious = []
    for c in target[valid].unique().tolist():
        p, t = (pred == c) & valid, target == c
        ious.append((p & t).sum().item() / (p | t).sum().item())
    return sum(ious) / len(ious)


def test_overfits_one_real_image() -> None:
    """B0 from scratch learns one MSRC-v2 image (grass, cow, background) to a mean IoU of at least 0.9."""
    image, target = load_msrc("1_11_s", 128)
    assert len(set(target.unique().tolist()) - {IGNORE_INDEX}) == 3
    torch.manual_seed(0)
    model = SegFormer.from_preset("b0", 4).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = normalise(image[None], IMAGENET_MEAN, IMAGENET_STD)
    losses = []
    for _ in range(40):
        logits = F.interpolate(model(x), size=target.shape, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, target[None], ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    score = mean_iou(predict(model.eval(), image).long(), target)
    assert score >= 0.9, f"mean IoU {score:.3f} after 40 steps"


def test_reference_init_follows_the_reference_code() -> None:
    """Linear trunc-normal std 0.02, conv normal std sqrt(2 / fan_out), norms 1 and 0, classifier std 0.01."""
    model = reference_init(SegFormer.from_preset("b0", 4))
    query = model.encoder.blocks[2][0].attention.query
    assert query.weight.std().item() == pytest.approx(0.02, rel=0.05)  # truncated at +-2 (absolute), as timm
    assert torch.equal(query.bias, torch.zeros_like(query.bias))
    dwconv = model.encoder.blocks[1][0].ffn.dwconv  # depthwise: fan_out = 3 * 3 * C / C = 9
    assert dwconv.weight.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.05)
    embed = model.encoder.patch_merging[0].proj  # fan_out = 7 * 7 * 32
    assert embed.weight.std().item() == pytest.approx((2 / (49 * 32)) ** 0.5, rel=0.1)
    norm = model.encoder.norms[3]
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and torch.equal(
        norm.bias, torch.zeros_like(norm.bias)
    )
    assert model.decoder.classifier.weight.std().item() == pytest.approx(0.01, rel=0.2)
