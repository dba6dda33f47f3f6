"""The prediction path: normalise -> forward -> upsample the logits -> argmax, on a real image."""

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, predict, working_size
from segformer.images import to_rgb
from segformer.predict import upsampled_argmax
from train.paths import DATASETS_DIR as DATASETS

# The module, not the function of the same name that the package exports.
PREDICT_MODULE = importlib.import_module("segformer.predict")


@pytest.fixture(scope="module")
def model() -> SegFormer:
    torch.manual_seed(0)
    return SegFormer.from_preset("b0", 6).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A real CamVid street scene, uint8 (3, 360, 480)."""
    path = sorted((DATASETS / "camvid" / "images" / "val").glob("*.jpg"))[0]
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def test_predict_normalises_upsamples_the_logits_then_takes_the_argmax(model: SegFormer, image: torch.Tensor) -> None:
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = ((image.float() / 255 - mean) / std)[None]
    with torch.no_grad():
        logits = model(x)
    expected = F.interpolate(logits, size=image.shape[1:], mode="bilinear", align_corners=False).argmax(1)[0]
    labels = predict(model, image)
    assert labels.shape == image.shape[1:] and labels.dtype == torch.uint8
    assert torch.equal(labels.long(), expected)
    # Not the cheaper argmax-then-upsample: that gives a different (blockier) mask.
    blocky = F.interpolate(logits.argmax(1, keepdim=True).float(), size=image.shape[1:], mode="nearest")[0, 0]
    assert not torch.equal(labels.long(), blocky.long())


def test_predict_takes_batches_and_float_images(model: SegFormer, image: torch.Tensor) -> None:
    single = predict(model, image)
    batch = predict(model, torch.stack([image, image.flip(-1)]))
    assert batch.shape == (2, *image.shape[1:])
    assert torch.equal(batch[0], single)
    assert torch.equal(predict(model, image.float() / 255), single)


def test_predict_takes_what_users_hold_a_pil_image_or_a_numpy_array(model: SegFormer, image: torch.Tensor) -> None:
    """A PIL image (any mode, converted as the app converts uploads) or an (H, W, 3) uint8 array, as the tensor."""
    expected = predict(model, image)
    rgb = image.permute(1, 2, 0).numpy()
    assert torch.equal(predict(model, rgb), expected)
    assert torch.equal(predict(model, Image.fromarray(rgb)), expected)
    decoded = np.asarray(Image.fromarray(rgb))  # read-only, as numpy views of PIL images are
    assert not decoded.flags.writeable
    assert torch.equal(predict(model, decoded[:, ::-1]), predict(model, image.flip(-1)))  # and strided
    grey = Image.fromarray(rgb).convert("L")
    assert torch.equal(predict(model, grey), predict(model, np.asarray(to_rgb(grey))))
    assert predict(model, grey).shape == image.shape[1:]


def test_predict_rejects_images_of_the_wrong_shape(model: SegFormer) -> None:
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 3, height, width\)"):
        predict(model, torch.zeros(1, 4, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"expected a numpy image of shape \(height, width, 3\)"):
        predict(model, np.zeros((3, 64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected uint8 or \\[0, 1\\] float images, got torch.int64"):
        predict(model, torch.zeros(3, 64, 64, dtype=torch.int64))


def test_working_size_scales_the_longer_side_down_to_max_side() -> None:
    assert working_size(360, 480, 160) == (120, 160)
    assert working_size(9000, 12000, 1024) == (768, 1024)
    assert working_size(1000, 30, 100) == (100, 3)
    assert working_size(360, 480, 480) == (360, 480)  # already small enough: unchanged, never enlarged


def test_max_side_bounds_the_working_size_but_not_the_mask(model: SegFormer, image: torch.Tensor) -> None:
    seen = []
    handle = model.register_forward_pre_hook(lambda _module, args: seen.append(tuple(args[0].shape)))
    try:
        labels = predict(model, image, max_side=160)
    finally:
        handle.remove()
    assert seen == [(1, 3, 120, 160)]
    assert labels.shape == image.shape[1:]
    # Most pixels agree with the full-size prediction: the same scene, seen smaller.
    assert (labels == predict(model, image)).float().mean() > 0.5


@pytest.mark.parametrize(
    "max_side, short_side", [(160, None), (1024, 180), (1024, 512)], ids=["down", "down-short", "up"]
)
def test_the_network_sees_the_image_resized_then_normalised_as_if_normalised_first(
    model: SegFormer, image: torch.Tensor, max_side: int, short_side: int | None
) -> None:
    """predict resizes before it normalises (the normalisation then runs at the working size): against the plain
    order, normalise the photo then resize it, the network's input differs by rounding, and the masks agree."""
    seen = []
    handle = model.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    try:
        labels = predict(model, image, max_side=max_side, short_side=short_side)
    finally:
        handle.remove()
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    plain = ((image.float() / 255 - mean) / std)[None]
    size = working_size(*image.shape[1:], max_side, short_side=short_side)
    plain = F.interpolate(plain, size=size, mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(seen[0], plain, rtol=0, atol=1e-5)
    with torch.no_grad():
        expected = upsampled_argmax(model(plain), tuple(image.shape[1:]))[0]
    assert (labels == expected).float().mean() >= 0.999


def test_working_size_scales_the_shorter_side_to_short_side_within_max_side() -> None:
    assert working_size(360, 480, 1024, short_side=512) == (512, 683)  # up: 512 / 360
    assert working_size(213, 320, short_side=512) == (512, 769)
    assert working_size(1500, 2000, 1024, short_side=512) == (512, 683)  # down
    assert working_size(100, 1000, 1024, short_side=512) == (102, 1024)  # the longer side's bound wins
    assert working_size(512, 700, 1024, short_side=512) == (512, 700)  # already at the scale: unchanged


def test_short_side_sets_the_working_size_and_not_the_mask(model: SegFormer, image: torch.Tensor) -> None:
    seen = []
    handle = model.register_forward_pre_hook(lambda _module, args: seen.append(tuple(args[0].shape)))
    try:
        labels = predict(model, image, max_side=1024, short_side=180)
    finally:
        handle.remove()
    assert seen == [(1, 3, 180, 240)]
    assert labels.shape == image.shape[1:]


def test_banded_argmax_equals_the_direct_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The band-by-band path for huge masks (separable resampling) gives the direct path's labels."""
    logits = torch.randn(2, 7, 23, 31, generator=torch.Generator().manual_seed(0))
    size = (181, 247)  # not a multiple of the band, nor of the logits' size
    direct = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1).to(torch.uint8)
    assert torch.equal(upsampled_argmax(logits, size), direct)  # below the threshold: the direct path
    monkeypatch.setattr(PREDICT_MODULE, "_BAND_THRESHOLD", 0)
    for band in (1, 16, 1000):
        assert torch.equal(upsampled_argmax(logits, size, band=band), direct), f"band {band}"


def test_a_huge_mask_is_predicted_in_bands(model: SegFormer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a lowered threshold predict() itself takes the banded path, and gives the same mask."""
    image = torch.randint(0, 256, (3, 200, 150), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    direct = predict(model, image, max_side=64)
    monkeypatch.setattr(PREDICT_MODULE, "_BAND_THRESHOLD", 1000)
    assert torch.equal(predict(model, image, max_side=64), direct)
