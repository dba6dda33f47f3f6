"""A photo from the network decoded at a bounded size, whatever size it claims.

The network only sees the longer side at 1024 pixels, so there is no need to hold a 100-megapixel photo whole:
a JPEG is decoded reduced by its DCT (Pillow's draft mode: 1/2, 1/4 or 1/8 of each side, at a fraction of the
time and memory), any other format is decoded and then reduced (``Image.reduce``, a box average) before it is
converted to RGB. :func:`decode_photo` returns the photo at most ``max_pixels`` (by a whole factor of each side),
upright as its EXIF orientation says, with its own size; the app computes the mask at that size.

Only a few formats are opened (:data:`FORMATS`): Pillow's others include ones whose decoders cost far more per
pixel or run outside Python. JPEGs are accepted up to segformer's MAX_PIXELS, the others, decoded whole, up to
MAX_OTHER_PIXELS. Every refusal is an InputError whose message names no path.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from segformer.images import DECODE_ERRORS, MAX_PIXELS, InputError, check_size, to_rgb

#: The formats opened, by Pillow's names.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
#: Formats decoded reduced by the DCT (Pillow opens a camera's MPO, a JPEG with a second picture, as JPEG).
DCT_FORMATS = ("JPEG", "MPO")
#: Largest image accepted in a format that is decoded whole before it is reduced (4096 x 4096 fits): decoding one
#: whole is the cost that bench.bench_app_large holds to its 3-second goal.
MAX_OTHER_PIXELS = 16_800_000
#: What each EXIF orientation (tag 0x0112) asks for to show the picture upright.
ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
NOT_AN_IMAGE = "The file is not an image format that can be read (JPEG, PNG, WebP, GIF, BMP or TIFF)."

Image.init()  # registers every format Pillow has (Image.open with ``formats`` looks each one up)
# Pillow's own bomb check (a warning above its limit, an error above twice that) set to the largest size accepted
# here: every image is refused above its format's limit before it is decoded.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)


@dataclass(frozen=True)
class Photo:
    """A decoded photo: RGB pixels at ``1 / factor`` of each side of the photo (rounded up), and the photo's own
    upright size."""

    rgb: np.ndarray  # (H, W, 3) uint8
    size: tuple[int, int]  # (width, height) of the photo itself, upright
    factor: int
    animated: bool  # the file holds more frames than the first, the one decoded

    @property
    def reduced(self) -> bool:
        """Whether the pixels are fewer than the photo's."""
        return self.factor > 1


def reduction(width: int, height: int, max_pixels: int, dct: bool = False) -> int:
    """The smallest whole factor f such that ceil(width / f) * ceil(height / f) <= max_pixels; with ``dct``, the
    smallest such power of two up to 8 (a JPEG is then decoded at exactly that scale, with no resampling after)."""
    factor = max(1, math.ceil(math.sqrt(width * height / max_pixels)))
    while math.ceil(width / factor) * math.ceil(height / factor) > max_pixels:
        factor += 1
    return min(2 ** math.ceil(math.log2(factor)), 8) if dct and factor <= 8 else factor


def reducible(image: Image.Image) -> Image.Image:
    """``image`` in a mode whose pixels can be averaged: palettes expanded, 1-bit to 8-bit, 16-bit to 32-bit."""
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode.startswith("I;16"):
        return image.convert("I")
    return image


def decode_photo(path: str | Path | BinaryIO, max_pixels: int) -> Photo:
    """Decode the image file at ``path`` (or a binary file, as a camera frame) to RGB at most ``max_pixels`` (see
    the module's docstring).

    Raises InputError for anything that is not a usable image: another format, damaged data, too large for its
    format, or too small or elongated for the network (segformer.images.check_size).
    """
    try:
        image = Image.open(path, formats=FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        if isinstance(err, Image.DecompressionBombError):
            raise InputError(f"The image is larger than the {MAX_PIXELS / 1e6:.0f} megapixels accepted.") from err
        raise InputError(NOT_AN_IMAGE) from err
    except DECODE_ERRORS as err:
        raise InputError("The image file is damaged or cannot be read.") from err
    with image:
        width, height = image.size
        limit = MAX_PIXELS if image.format in DCT_FORMATS else MAX_OTHER_PIXELS
        if width * height > limit:
            raise InputError(
                f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels): more than the "
                f"{limit / 1e6:g} megapixels accepted for a {image.format} file."
            )
        check_size(width, height)
        factor = reduction(width, height, max_pixels, dct=image.format in DCT_FORMATS)
        target = (math.ceil(width / factor), math.ceil(height / factor))
        try:
            animated = image.format not in DCT_FORMATS and bool(getattr(image, "is_animated", False))
            orientation = image.getexif().get(0x0112, 1)
            if factor > 1 and image.format in DCT_FORMATS:
                image.draft(None, target)
            image.load()
            picture = reducible(image)
            if picture.size != target:
                exact = picture.size == (width, height)
                picture = picture.reduce(factor) if exact else picture.resize(target, Image.Resampling.BOX)
            picture = to_rgb(picture)
        except DECODE_ERRORS as err:
            raise InputError("The image file is damaged or truncated and cannot be decoded.") from err
    if orientation in ORIENTATION:
        picture = picture.transpose(ORIENTATION[orientation])
        if orientation >= 5:
            width, height = height, width
    return Photo(np.asarray(picture), (width, height), factor, animated)
