"""Mixed precision: every forward and the prediction path run under bfloat16 autocast, close to float32.

On CPU, with the shipped checkpoint on real validation images, bfloat16 autocast was measured to move the logits
by at most 0.7% of their largest magnitude (max abs 0.04-0.08 on logits up to 7-14; mean abs about 0.008) and to
change 0-0.11% of the predicted pixels. The bounds below leave about 3x of room: 2% and 99% agreement.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segformer
from segformer import SegFormer
from segformer.predict import normalise
from train.paths import DATASETS_DIR as DATASETS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"
#: Largest logit change under bfloat16 autocast, relative to the largest float32 logit.
RELATIVE_TOLERANCE = 0.02
#: Smallest share of pixels whose predicted class is the same under bfloat16 autocast.
AGREEMENT = 0.99


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def val_images() -> list[np.ndarray]:
    """Two real validation photos of each of MSRC-v2 (320x213) and CamVid (480x360), uint8 (H, W, 3)."""
    paths = [sorted((DATASETS / s / "images" / "val").glob("*.jpg"))[i] for s in ("msrc-v2", "camvid") for i in (0, 7)]
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(np.array(image.convert("RGB")))
    return images


@pytest.fixture(scope="module")
def shipped() -> tuple[SegFormer, dict]:
    return segformer.load_checkpoint(CHECKPOINT)


def relative_error(low: torch.Tensor, reference: torch.Tensor) -> float:
    return ((low.float() - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize("attentions", [False, True], ids=["fused-attention", "attention-maps"])
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_forward_runs_under_bf16_autocast_close_to_float32(
    shipped: tuple[SegFormer, dict], mode: str, grad: bool, attentions: bool
) -> None:
    """Train and eval mode, with and without autograd and attention maps (each takes another path in the decoder).

    The shipped weights in a model without drop path and dropout, so that train mode is deterministic too.
    """
    weights, meta = shipped
    model = SegFormer(replace(weights.config, drop_path=0.0, classifier_dropout=0.0), weights.num_classes)
    model.load_state_dict(weights.state_dict())
    model.train(mode == "train")
    rgb = val_images()[0]
    x = normalise(torch.from_numpy(rgb).permute(2, 0, 1)[None], meta["mean"], meta["std"])
    with torch.set_grad_enabled(grad):
        reference = model(x, return_attentions=attentions)
        with bf16():
            low = model(x, return_attentions=attentions)
    if attentions:
        (reference, _), (low, low_maps) = reference, low
        assert len(low_maps) == 4 and all(len(stage) == 2 for stage in low_maps)
    assert low.dtype == torch.bfloat16 and low.shape == reference.shape
    assert relative_error(low, reference.detach()) <= RELATIVE_TOLERANCE
    if grad:
        low.float().square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_predict_under_bf16_autocast_agrees_with_float32_on_real_images(shipped: tuple[SegFormer, dict]) -> None:
    model, meta = shipped
    for rgb in val_images():
        x = normalise(torch.from_numpy(rgb).permute(2, 0, 1)[None], meta["mean"], meta["std"])
        with torch.inference_mode():
            reference = model(x)
            with bf16():
                low = model(x)
        assert relative_error(low, reference) <= RELATIVE_TOLERANCE
        full = segformer.predict(model, rgb, mean=meta["mean"], std=meta["std"])
        with bf16():
            mixed = segformer.predict(model, rgb, mean=meta["mean"], std=meta["std"])
        assert mixed.shape == full.shape == rgb.shape[:2]
        assert (mixed == full).double().mean().item() >= AGREEMENT
