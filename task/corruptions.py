"""Natural corruptions of a photo: the paper's 16 by group, and numpy/PIL versions of the 13 that the page offers.

SegFormer's robustness study (Xie et al., NeurIPS 2021, Section 4.4, Table 5) segments Cityscapes-C: the val photos
under the 16 natural corruptions of Hendrycks & Dietterich (ICLR 2019) in four groups (GROUPS), at five severities,
made with ``imagecorruptions``, the reference code of the corrupted benchmarks (Michaelis et al., 2019, "Benchmarking
Robustness in Object Detection"). experiments.robustness runs that package itself (requirements-robust.txt).

The page cannot depend on it (it brings OpenCV, scikit-image, SciPy and numba), so :func:`corrupt` computes the
corruptions of CORRUPTIONS with numpy and PIL: the package's parameters for each severity, its algorithm, and its
random draws for a seed (``np.random.seed(seed)`` then numpy's global generator, as the package draws; impulse noise
from ``np.random.default_rng(seed)``, as its scikit-image call does), truncated to uint8 as the package does. The
pixels agree with the package's on the same seed up to float rounding (tests/test_corruptions.py). Left out: glass
blur (a pixel-by-pixel shuffle, seconds on one photo), frost (it blends in photos of frost that only the package
ships) and spatter (OpenCV's edge detector and distance transform).
"""

import io
import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from segformer.images import MAX_SIDE
from segformer.predict import resize_images, working_size

#: The paper's 16 corruptions (Table 5), by group, under the package's names.
GROUPS: dict[str, tuple[str, ...]] = {
    "blur": ("motion_blur", "defocus_blur", "glass_blur", "gaussian_blur"),
    "noise": ("gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"),
    "digital": ("brightness", "contrast", "saturate", "jpeg_compression"),
    "weather": ("snow", "spatter", "fog", "frost"),
}
#: A label for each, as the paper's table heads its columns.
LABELS: dict[str, str] = {
    "motion_blur": "Motion blur",
    "defocus_blur": "Defocus blur",
    "glass_blur": "Glass blur",
    "gaussian_blur": "Gaussian blur",
    "gaussian_noise": "Gaussian noise",
    "impulse_noise": "Impulse noise",
    "shot_noise": "Shot noise",
    "speckle_noise": "Speckle noise",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "saturate": "Saturate",
    "jpeg_compression": "JPEG",
    "snow": "Snow",
    "spatter": "Spatter",
    "fog": "Fog",
    "frost": "Frost",
}
SEVERITIES = (1, 2, 3, 4, 5)


def _unit(image: np.ndarray) -> np.ndarray:
    return image / 255.0


# ------------------------------------------------------------------------------------------------------------ noise
def gaussian_noise(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    scale = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    x = _unit(image)
    return np.clip(x + np.random.RandomState(seed).normal(size=x.shape, scale=scale), 0, 1) * 255


def shot_noise(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    photons = (60, 25, 12, 5, 3)[severity - 1]
    return np.clip(np.random.RandomState(seed).poisson(_unit(image) * photons) / photons, 0, 1) * 255


def impulse_noise(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Salt and pepper: each value is flipped with probability ``amount``, to 1 or 0 with equal odds (scikit-image's
    ``random_noise(mode="s&p")``, which draws the flips and then the salt from one generator)."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    rng = np.random.default_rng(seed)
    x = _unit(image)
    flipped = rng.random(x.shape) <= amount
    salted = rng.random(x.shape) <= 0.5
    x[flipped & salted] = 1
    x[flipped & ~salted] = 0
    return x * 255


def speckle_noise(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    scale = (0.15, 0.2, 0.35, 0.45, 0.6)[severity - 1]
    x = _unit(image)
    return np.clip(x + x * np.random.RandomState(seed).normal(size=x.shape, scale=scale), 0, 1) * 255


# ------------------------------------------------------------------------------------------------------------- blur
def _filtered(x: np.ndarray, kernel: np.ndarray, border: str) -> np.ndarray:
    """Each channel of ``x`` (H, W, C) filtered with a symmetric 2-D ``kernel`` of odd sides (by FFT, so the cost does
    not grow with the kernel), the borders extended as ``np.pad`` mode ``border``."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(x, ((ry, ry), (rx, rx), (0, 0)), mode=border)
    size = padded.shape[:2]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel, s=size)[..., None]
    return np.fft.irfft2(spectrum, s=size, axes=(0, 1))[2 * ry :, 2 * rx :]


def _gaussian_kernel(sigma: float, radius: int, dtype: type = np.float64) -> np.ndarray:
    """Normalised 1-D Gaussian weights at -radius..radius."""
    weights = np.exp(-0.5 / sigma**2 * np.arange(-radius, radius + 1, dtype=np.float64) ** 2)
    return (weights / weights.sum()).astype(dtype)


def gaussian_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """scikit-image's ``gaussian``: SciPy's filter, truncated at 4 sigma, borders extended with the edge value."""
    sigma = (1, 2, 3, 4, 6)[severity - 1]
    weights = _gaussian_kernel(sigma, int(4 * sigma + 0.5))
    return np.clip(_filtered(_unit(image), np.outer(weights, weights), "edge"), 0, 1) * 255


def _disk(radius: int, alias_blur: float) -> np.ndarray:
    """The defocus kernel: a normalised disk, antialiased by OpenCV's ``GaussianBlur`` (float32, reflected borders)."""
    side = max(radius, 8)
    grid = np.arange(-side, side + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    weights = _gaussian_kernel(alias_blur, 1 if radius <= 8 else 2, np.float32)
    return _filtered(disk[..., None], np.outer(weights, weights), "reflect")[..., 0].astype(np.float32)


def defocus_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """OpenCV's ``filter2D`` with the disk kernel, borders reflected without repeating the edge (its default)."""
    radius, alias_blur = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    return np.clip(_filtered(_unit(image), _disk(radius, alias_blur).astype(np.float64), "reflect"), 0, 1) * 255


def _motion_blurred(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """The package's motion blur: a half-Gaussian weighting of ``2 radius + 1`` copies of ``x`` shifted one pixel
    further along ``angle`` (degrees) each, the borders extended with the edge value."""
    width = 2 * radius + 1
    taps = np.arange(width)
    kernel = np.exp(-(taps**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    kernel = kernel / kernel.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(*point)
    padded = np.pad(x, [(width, width), (width, width)] + [(0, 0)] * (x.ndim - 2), mode="edge")
    height, breadth = x.shape[:2]
    blurred = np.zeros_like(x, dtype=np.float32)
    for i in range(width):
        dy = -math.ceil(i * point[0] / hypot - 0.5)
        dx = -math.ceil(i * point[1] / hypot - 0.5)
        if abs(dy) >= height or abs(dx) >= breadth:  # the motion left the image
            break
        shifted = padded[width - dy : width - dy + height, width - dx : width - dx + breadth]
        blurred = blurred + kernel[i] * shifted
    return blurred


def motion_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    angle = np.random.RandomState(seed).uniform(-45, 45)
    return np.clip(_motion_blurred(image, radius, sigma, angle), 0, 255)


# ---------------------------------------------------------------------------------------------------------- digital
def _value_and_delta(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV's value (the largest channel) and the spread of the channels, each (H, W, 1)."""
    value = x.max(-1, keepdims=True)
    return value, value - x.min(-1, keepdims=True)


def brightness(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """HSV value raised by ``c`` (clipped at 1), hue and saturation kept: each channel scaled by v' / v, black to grey
    c (scikit-image's rgb2hsv -> hsv2rgb round trip, in closed form)."""
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    x = _unit(image)
    value, _ = _value_and_delta(x)
    raised = np.minimum(value + c, 1)
    scaled = x * np.divide(raised, value, out=np.zeros_like(value), where=value > 0)
    return np.clip(np.where(value > 0, scaled, raised), 0, 1) * 255


def contrast(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    x = _unit(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def saturate(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """HSV saturation s' = clip(s a + b), hue and value kept: each channel v - s' v w, w = (v - channel) / (v - min)
    its place between the largest and smallest channel ((0, 1, 1) for a grey, whose hue is 0 in scikit-image)."""
    a, b = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))[severity - 1]
    x = _unit(image)
    value, delta = _value_and_delta(x)
    saturation = np.divide(delta, value, out=np.zeros_like(value), where=delta > 0)
    grey = np.array([0.0, 1.0, 1.0])
    place = np.where(delta > 0, np.divide(value - x, delta, out=np.zeros_like(x), where=delta > 0), grey)
    return np.clip(value - np.clip(saturation * a + b, 0, 1) * value * place, 0, 1) * 255


def jpeg_compression(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


# ---------------------------------------------------------------------------------------------------------- weather
def _plasma_fractal(size: int, decay: float, rng: np.random.RandomState) -> np.ndarray:
    """(size, size) float32 heightmap in [0, 1] by the diamond-square algorithm; ``size`` a power of two."""
    grid = np.zeros((size, size), np.float32)
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, shift=-1, axis=0)
        squares += np.roll(squares, shift=-1, axis=1)
        grid[half:size:step, half:size:step] = wibbled_mean(squares)
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        left = (centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1))
        grid[0:size:step, half:size:step] = wibbled_mean(left)
        top = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0))
        grid[half:size:step, 0:size:step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def fog(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    strength, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    height, width = image.shape[:2]
    size = 1 << (max(height, width) - 1).bit_length()
    x = _unit(image)
    top = x.max()
    x += strength * _plasma_fractal(size, decay, np.random.RandomState(seed))[:height, :width][..., None]
    return np.clip(x * top / (top + strength), 0, 1) * 255


def _zoomed(layer: np.ndarray, factor: float) -> np.ndarray:
    """The centre 1/factor of a 2-D ``layer`` scaled back up by ``factor`` (SciPy's linear ``zoom``, corners on
    corners): the package's ``clipped_zoom``, untrimmed."""
    height, width = layer.shape
    crop_h, crop_w = math.ceil(height / factor), math.ceil(width / factor)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    out = layer[top : top + crop_h, left : left + crop_w]
    for axis, size in enumerate(out.shape):
        steps = round(size * factor)
        where = np.arange(steps) * ((size - 1) / (steps - 1))
        start = np.minimum(np.floor(where).astype(int), size - 2)
        frac = (where - start).reshape((-1, 1) if axis == 0 else (1, -1))
        out = np.take(out, start, axis) * (1 - frac) + np.take(out, start + 1, axis) * frac
    return out


def snow(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    mean, spread, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    )[severity - 1]
    rng = np.random.RandomState(seed)
    x = image.astype(np.float32) / 255
    flakes = _zoomed(rng.normal(size=x.shape[:2], loc=mean, scale=spread), zoom)
    flakes[flakes < threshold] = 0
    flakes = _motion_blurred(np.clip(flakes, 0, 1), radius, sigma, rng.uniform(-135, -45))
    flakes = (np.round(flakes * 255).astype(np.uint8) / 255)[: x.shape[0], : x.shape[1], None]
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)  # OpenCV's RGB2GRAY
    x = keep * x + (1 - keep) * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


#: The corruptions implemented here, in the order of GROUPS: what the page offers.
CORRUPTIONS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "gaussian_blur": gaussian_blur,
    "gaussian_noise": gaussian_noise,
    "impulse_noise": impulse_noise,
    "shot_noise": shot_noise,
    "speckle_noise": speckle_noise,
    "brightness": brightness,
    "contrast": contrast,
    "saturate": saturate,
    "jpeg_compression": jpeg_compression,
    "snow": snow,
    "fog": fog,
}


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``image`` (H, W, 3) uint8 under corruption ``name`` (a key of CORRUPTIONS) at ``severity`` 1..5, its random
    draws seeded by ``seed``: a new (H, W, 3) uint8 array, the same pixels for the same seed."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    return CORRUPTIONS[name](image, severity, seed).astype(np.uint8)


def working_image(image: np.ndarray, short_side: int | None, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """``image`` (H, W, 3) uint8 at the size a checkpoint's network sees it (segformer.predict.working_size), resized
    as the prediction path resizes (bilinear, antialiased when shrinking) and rounded: where the page and the
    benchmark corrupt a photo, so the work is bounded by the working size, not the photo's."""
    size = working_size(*image.shape[:2], max_side, short_side=short_side)
    x = torch.from_numpy(np.require(image, requirements=("C", "W"))).permute(2, 0, 1)[None].float()
    return resize_images(x, size)[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
