"""The corruptions the page offers (task.corruptions), on a real val photo at the working size: what they do to it,
their seeds, and their agreement with the reference package the benchmark runs (imagecorruptions)."""

import importlib.util

import numpy as np
import pytest
from conftest import IN_CI
from PIL import Image

from segformer.images import MAX_SIDE
from segformer.predict import working_size
from task.corruptions import CORRUPTIONS, GROUPS, LABELS, SEVERITIES, corrupt, working_image
from train.paths import DATASETS_DIR

PHOTO = DATASETS_DIR / "camvid" / "images" / "val" / "0016E5_08079.jpg"
SHORT_SIDE = 384
#: Those that draw random numbers: another seed gives other pixels.
RANDOM = ("motion_blur", "gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise", "snow", "fog")
#: Severities the reference does not order by distance: its snow whitens the photo alike at 2 and 3 (the flakes
#: differ), and on this photo 3 sits 0.4% nearer than 2.
UNORDERED = {"snow": (2, 3)}
#: Those whose every step is the package's own arithmetic, in its order: the same floats, so the same pixels.
EXACT = (
    "motion_blur",
    "gaussian_noise",
    "impulse_noise",
    "shot_noise",
    "speckle_noise",
    "contrast",
    "jpeg_compression",
    "fog",
)


def photo() -> np.ndarray:
    """The CamVid val photo at the working size (480x360 -> 512x384), as the page corrupts it."""
    with Image.open(PHOTO) as im:
        return working_image(np.asarray(im.convert("RGB")), SHORT_SIDE)


def test_the_page_offers_a_corruption_of_every_group_of_the_paper() -> None:
    assert len([name for names in GROUPS.values() for name in names]) == 16 and set(LABELS) >= set(CORRUPTIONS)
    for group, names in GROUPS.items():
        assert set(names) & set(CORRUPTIONS), group
    assert "glass_blur" not in CORRUPTIONS


def test_working_image_is_the_size_the_network_sees() -> None:
    image = photo()
    assert image.shape == (384, 512, 3) and image.dtype == np.uint8
    assert np.array_equal(working_image(image, SHORT_SIDE), image)  # already there: unchanged
    wide = np.zeros((300, 3000, 3), np.uint8)
    assert working_image(wide, SHORT_SIDE).shape[:2] == working_size(300, 3000, MAX_SIDE, short_side=SHORT_SIDE)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_shape_and_dtype_and_changes_the_photo(name: str) -> None:
    image = photo()
    before = image.copy()
    out = corrupt(image, name, 1, seed=0)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() > 0.5
    assert np.array_equal(image, before)  # the input is left as it was


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_a_higher_severity_moves_the_photo_further(name: str) -> None:
    image = photo()
    distance = {s: np.abs(corrupt(image, name, s, seed=0).astype(int) - image).mean() for s in SEVERITIES}
    pairs = list(zip(SEVERITIES, SEVERITIES[1:], strict=False))
    if name in UNORDERED:  # the pair's higher severity is compared with the one below the pair instead
        low, high = UNORDERED[name]
        pairs[pairs.index((low, high))] = (low - 1, high)
    assert all(distance[a] < distance[b] for a, b in pairs), {s: round(d, 2) for s, d in distance.items()}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_the_same_seed_gives_the_same_pixels(name: str) -> None:
    image = photo()
    assert np.array_equal(corrupt(image, name, 3, seed=7), corrupt(image, name, 3, seed=7))
    assert (name in RANDOM) == (not np.array_equal(corrupt(image, name, 3, seed=7), corrupt(image, name, 3, seed=8)))


def test_bad_arguments_are_refused() -> None:
    image = photo()
    for name, severity, array in (("frost", 1, image), ("fog", 0, image), ("fog", 1, image.astype(np.float32))):
        with pytest.raises(ValueError):
            corrupt(array, name, severity)


# Without the reference package (requirements-robust.txt) these skip; under CI=true they run and fail.
needs_package = pytest.mark.skipif(
    importlib.util.find_spec("imagecorruptions") is None and not IN_CI,
    reason="the reference package imagecorruptions (requirements-robust.txt) is not installed",
)


@needs_package
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_our_corruptions_agree_with_the_reference_package(name: str) -> None:
    """Same seed, same pixels: exactly where every step is the package's arithmetic in its order; elsewhere (FFT
    filtering, HSV in closed form, linear zoom written out) the floats differ by rounding, which the truncation to
    uint8 turns into a step of 1 on the few values that sit on a level."""
    from experiments.robustness import reference_corrupt

    image = photo()[:192, :256]  # a quarter of the photo: the same arithmetic, four times faster
    for severity in (1, 3, 5):
        ours = corrupt(image, name, severity, seed=11).astype(int)
        reference = reference_corrupt(image, name, severity, seed=11).astype(int)
        difference = np.abs(ours - reference)
        if name in EXACT:
            assert difference.max() == 0, (severity, difference.mean())
        else:
            assert difference.max() <= 1 and difference.mean() < 0.1, (severity, difference.max(), difference.mean())
