"""``segformer.images.MIN_SIDE`` is the encoder's own bound (``MixTransformer.check_input_size``), on a real photo:
a crop of MIN_SIDE pixels a side is read and segmented, one pixel less is refused by both."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segformer import PRESETS, SegFormer, load_checkpoint, predict
from segformer.images import MIN_SIDE, InputError, read_image
from segformer.mix_transformer import MixTransformer

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"
PHOTO = ROOT / "examples" / "photos" / "msrc-v2__5_14_s.jpg"


@pytest.fixture(scope="module")
def shipped() -> tuple[SegFormer, dict]:
    return load_checkpoint(CHECKPOINT)


def crop(tmp_path: Path, side: int) -> Path:
    """A side x side PNG crop of a bundled photo."""
    path = tmp_path / f"crop-{side}.png"
    with Image.open(PHOTO) as image:
        image.crop((100, 80, 100 + side, 80 + side)).save(path)
    return path


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_encoder_has_the_smallest_side_min_side(name: str) -> None:
    with torch.device("meta"):
        assert MixTransformer(PRESETS[name]).smallest_side() == MIN_SIDE


def test_a_min_side_crop_is_segmented_and_one_pixel_less_is_refused(
    shipped: tuple[SegFormer, dict], tmp_path: Path
) -> None:
    model, meta = shipped
    rgb = read_image(crop(tmp_path, MIN_SIDE))
    assert rgb.shape == (MIN_SIDE, MIN_SIDE, 3)
    mask = predict(model, rgb, mean=meta["mean"], std=meta["std"]).numpy()
    assert mask.shape == (MIN_SIDE, MIN_SIDE) and set(np.unique(mask)) <= set(range(len(meta["classes"])))
    small = crop(tmp_path, MIN_SIDE - 1)
    with pytest.raises(InputError, match=f"each side must be at least {MIN_SIDE} pixels"):
        read_image(small)
    with Image.open(small) as image:
        too_small = np.array(image)
    with pytest.raises(ValueError, match=f"too small: .* at least {MIN_SIDE}x{MIN_SIDE}"):
        predict(model, too_small, mean=meta["mean"], std=meta["std"])
