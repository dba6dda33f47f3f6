"""Images in and out of the prediction path: safe decoding of image files, and colour overlays of masks.

The app and ``python -m segformer segment`` both decode with :func:`read_image` (EXIF rotation applied; grayscale,
palette, RGBA, 16-bit and CMYK converted to RGB; decompression bombs, tiny and too elongated images refused) and
draw with :func:`blend`; :func:`palette_png` writes a mask that viewers show in colour (the app's download, the
bundled examples' labels).
"""

import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from segformer.config import preset
from segformer.mix_transformer import MixTransformer

#: Longer side of the image the network sees when segmenting a file (the mask still comes back at full size).
MAX_SIDE = 1024
#: Largest image accepted (12000 x 9000 = 108 megapixels fits); larger ones are refused as decompression bombs.
MAX_PIXELS = 120_000_000
#: What Pillow raises for damaged data while decoding (after the header was read).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
#: Colour of pixels whose id is not a class (the ignore label) in pictures of masks.
IGNORE_COLOUR = (255, 255, 255)


def encoder_smallest_side() -> int:
    """The smallest side the paper's encoder accepts (every preset B0-B5 has the same patch sizes, strides and key
    reductions), as ``MixTransformer.check_input_size`` computes it; built on the meta device, without weights."""
    with torch.device("meta"):
        return MixTransformer(preset("b0")).smallest_side()


#: Smallest side the network accepts at its working size: stage 1's 8x8 key reduction needs a grid of 8.
MIN_SIDE = encoder_smallest_side()


class InputError(ValueError):
    """A file that cannot be segmented; the message is meant for a person (the app's page, the CLI's report)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any PIL image: 16-bit and float scaled to 8 bits, transparency over white."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def check_size(width: int, height: int, max_side: int = MAX_SIDE) -> None:
    """Refuse images too large (decompression bombs), too small, or too elongated to keep a short side of
    MIN_SIDE at a working size of ``max_side``."""
    if width * height > MAX_PIXELS:
        raise InputError(
            f"The image is {width}x{height} ({width * height / 1e6:.0f} megapixels): more than the "
            f"{MAX_PIXELS / 1e6:.0f} megapixels accepted (possible decompression bomb)."
        )
    if min(width, height) < MIN_SIDE:
        raise InputError(f"The image is {width}x{height}: each side must be at least {MIN_SIDE} pixels.")
    if max(width, height) > min(width, height) * (max_side // MIN_SIDE):
        raise InputError(
            f"The image is {width}x{height}: one side is more than {max_side // MIN_SIDE} times the other, "
            f"too elongated for the network's {max_side}-pixel working size."
        )


def read_image(path: str | Path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Decode an image file into (H, W, 3) uint8 RGB, upright as its EXIF orientation says.

    Raises InputError with a readable message for anything that is not a usable image (see check_size).
    """
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise InputError(f"{err} Images up to {MAX_PIXELS / 1e6:.0f} megapixels are accepted.") from err
    except UnidentifiedImageError as err:
        raise InputError("The file is not an image format that can be read (JPEG, PNG, WebP, ...).") from err
    except OSError as err:
        raise InputError(f"The file cannot be read ({err}).") from err
    with image:
        check_size(*image.size, max_side)
        try:
            return np.array(to_rgb(ImageOps.exif_transpose(image)))
        except DECODE_ERRORS as err:
            raise InputError(f"The image file is damaged or truncated and cannot be decoded ({err}).") from err


def colourise(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB picture of a class-id mask; ids outside the palette (the ignore label) in IGNORE_COLOUR."""
    lut = np.tile(np.asarray(IGNORE_COLOUR, dtype=np.uint8), (256, 1))
    lut[: len(palette)] = palette
    return lut[mask]


def blend(rgb: np.ndarray, mask: np.ndarray, palette: np.ndarray, opacity: float) -> np.ndarray:
    """The photo with each pixel mixed toward its class colour: (1 - opacity) * photo + opacity * colour.

    Ids outside the palette (the ignore label) leave the photo as it is. The mix is integer arithmetic in 1/256
    steps, tabled once for every (class id, channel, value): the picture is then one lookup per byte, so the app's
    opacity slider can recolour without running the network.
    """
    weight = np.zeros(256, dtype=np.uint16)  # 0 for ids outside the palette: the photo as it is
    weight[: len(palette)] = round(min(max(opacity, 0.0), 1.0) * 256)
    colours = np.zeros((256, 3), dtype=np.uint16)
    colours[: len(palette)] = palette
    values = np.arange(256, dtype=np.uint16)
    mixed = values * (256 - weight[:, None, None]) + colours[:, :, None] * weight[:, None, None] + 128
    table = (mixed >> 8).astype(np.uint8).ravel()  # (id, channel, value) flattened
    return table[mask.astype(np.intp)[..., None] * 768 + np.arange(0, 768, 256) + rgb]


def palette_png(mask: np.ndarray, palette: np.ndarray) -> Image.Image:
    """Class-id mask as a palette image: the ids stay the pixel values, viewers show the class colours (ids
    outside the palette in IGNORE_COLOUR)."""
    image = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    colours = np.tile(np.asarray(IGNORE_COLOUR, dtype=np.uint8), (256, 1))
    colours[: len(palette)] = palette
    image.putpalette(colours.ravel().tolist())
    return image
