"""``segformer.Segmenter`` segments as the app does: its masks equal ``segformer.predict`` called with the
checkpoint's metadata as the app calls it, on the bundled photos and on hostile sizes and modes."""

from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants  # noqa: F401 (loaded for conftest's offline_cache, which patches it)
import numpy as np
import pytest
import torch
from hub_cache import cache_checkpoint
from PIL import Image

from segformer import Segmenter, load_checkpoint, predict, read_image, save_checkpoint
from segformer.checkpoint import DEFAULT_CHECKPOINT, read_metadata, working_short_side
from segformer.images import MAX_SIDE, MIN_SIDE

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted((ROOT / "examples" / "photos").glob("*.jpg"))
CAMVID_PHOTO = ROOT / "examples" / "photos" / "camvid__0016E5_08105.jpg"


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.from_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def apps_predict() -> Callable[[np.ndarray], np.ndarray]:
    """``segformer.predict`` as the app calls it: a model of its own, the metadata's mean, std and working scale,
    and the app's longest working side."""
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    settings = {"mean": meta["mean"], "std": meta["std"], "short_side": working_short_side(meta)}
    return lambda rgb: predict(model, rgb, max_side=MAX_SIDE, **settings).numpy()


def test_classes_palette_and_working_scale_come_from_the_metadata(segmenter: Segmenter) -> None:
    meta = read_metadata(DEFAULT_CHECKPOINT)
    assert segmenter.classes == tuple(meta["classes"]) and len(segmenter.classes) == segmenter.model.num_classes
    assert segmenter.palette.dtype == np.uint8 and segmenter.palette.tolist() == meta["palette"]
    assert (segmenter.mean, segmenter.std) == (tuple(meta["mean"]), tuple(meta["std"]))
    assert segmenter.short_side == meta.get("working_short_side") and segmenter.max_side == MAX_SIDE
    assert not segmenter.model.training


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.stem)
def test_masks_equal_the_apps_on_the_bundled_photos(
    segmenter: Segmenter, apps_predict: Callable[[np.ndarray], np.ndarray], photo: Path
) -> None:
    rgb = read_image(photo)
    expected = apps_predict(rgb)
    assert expected.shape == rgb.shape[:2]
    np.testing.assert_array_equal(segmenter(rgb).numpy(), expected)
    np.testing.assert_array_equal(segmenter(torch.from_numpy(rgb).permute(2, 0, 1)).numpy(), expected)
    with Image.open(photo) as image:  # no EXIF rotation in the bundled photos: the file's pixels are read_image's
        np.testing.assert_array_equal(segmenter(image).numpy(), expected)


def hostile(kind: str, tmp_path: Path) -> Path | np.ndarray:
    """An image file built from a bundled photo (as an upload would be), or for ``huge`` its pixels."""
    with Image.open(CAMVID_PHOTO) as opened:
        photo = opened.convert("RGB")
    if kind == "huge":  # 15.9 megapixels: its upsampled logits are over the threshold of the banded argmax
        return np.array(photo.resize((4608, 3456), Image.Resampling.BILINEAR))
    images = {
        "tiny": photo.crop((200, 150, 200 + MIN_SIDE, 150 + MIN_SIDE)),
        "odd-aspect": photo.crop((0, 100, 480, 100 + MIN_SIDE)).resize((1015, MIN_SIDE)),
        "tall": photo.crop((230, 0, 230 + MIN_SIDE, 360)),
        "grayscale": photo.convert("L"),
        "rgba": photo.convert("RGBA"),
        "palette": photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "16-bit": Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257),
    }
    image = images[kind]
    if kind == "rgba":  # the left third transparent: composited over white, as the app does
        alpha = np.full((image.height, image.width), 255, dtype=np.uint8)
        alpha[:, : image.width // 3] = 0
        image.putalpha(Image.fromarray(alpha))
    path = tmp_path / f"{kind}.png"
    image.save(path)
    return path


@pytest.mark.parametrize("kind", ["tiny", "huge", "odd-aspect", "tall", "grayscale", "rgba", "palette", "16-bit"])
def test_masks_equal_the_apps_on_hostile_sizes_and_modes(
    segmenter: Segmenter, apps_predict: Callable[[np.ndarray], np.ndarray], kind: str, tmp_path: Path
) -> None:
    source = hostile(kind, tmp_path)
    rgb = source if isinstance(source, np.ndarray) else read_image(source)  # the app's decoding
    expected = apps_predict(rgb)
    assert expected.shape == rgb.shape[:2]
    np.testing.assert_array_equal(segmenter(rgb).numpy(), expected)
    if isinstance(source, Path):  # the file opened by PIL, in its own mode: converted to RGB as the app does
        with Image.open(source) as image:
            np.testing.assert_array_equal(segmenter(image).numpy(), expected)


def test_batches_and_lists_give_each_images_mask(
    segmenter: Segmenter, apps_predict: Callable[[np.ndarray], np.ndarray]
) -> None:
    rgb = read_image(CAMVID_PHOTO)
    batch = np.stack([rgb, rgb[:, ::-1]])
    tensors = torch.from_numpy(batch).permute(0, 3, 1, 2)
    masks = segmenter(tensors)
    assert masks.shape == (2, *rgb.shape[:2])
    np.testing.assert_array_equal(masks.numpy(), apps_predict(tensors))
    assert torch.equal(segmenter(batch), masks)  # a numpy batch (B, H, W, 3)
    other = read_image(PHOTOS[0])
    listed = segmenter([rgb, Image.fromarray(other)])
    assert [m.shape for m in listed] == [rgb.shape[:2], other.shape[:2]]
    assert torch.equal(listed[0], segmenter(rgb)) and torch.equal(listed[1], segmenter(other))


def test_probabilities_are_upsampled_softmax_whose_argmax_is_the_mask(segmenter: Segmenter) -> None:
    for photo in PHOTOS[:3]:
        rgb = read_image(photo)
        probabilities = segmenter.probabilities(rgb)
        assert probabilities.shape == (len(segmenter.classes), *rgb.shape[:2])
        assert probabilities.dtype == torch.float32 and probabilities.min() >= 0
        torch.testing.assert_close(probabilities.sum(0), torch.ones(rgb.shape[:2]))
        assert torch.equal(probabilities.argmax(0).to(torch.uint8), segmenter(rgb))
        assert torch.equal(segmenter.logits(rgb).softmax(0), probabilities)


def test_an_hf_checkpoint_segments_as_the_local_one(segmenter: Segmenter, offline_cache: Path) -> None:
    cache_checkpoint(offline_cache, "segformer-test/shipped", "segformer-b0-4class")
    remote = Segmenter.from_checkpoint("hf://segformer-test/shipped/segformer-b0-4class")
    rgb = read_image(PHOTOS[0])
    assert remote.classes == segmenter.classes and remote.short_side == segmenter.short_side
    assert torch.equal(remote(rgb), segmenter(rgb))


def test_metadata_that_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    save_checkpoint(tmp_path / "two-classes", model, {**meta, "classes": ["a", "b"]})
    with pytest.raises(ValueError, match="4 model outputs, but 2 class names and 4 palette colours"):
        Segmenter.from_checkpoint(tmp_path / "two-classes")
    save_checkpoint(tmp_path / "no-palette", model, {k: v for k, v in meta.items() if k != "palette"})
    with pytest.raises(ValueError, match="has no palette in its metadata"):
        Segmenter.from_checkpoint(tmp_path / "no-palette")
