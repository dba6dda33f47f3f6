"""The one prediction path: normalise -> forward -> upsample the logits to the output size -> argmax.

To segment as the app does, use ``segformer.Segmenter`` (segformer.segmenter): it calls :func:`predict` with the
normalisation and working scale of a checkpoint's metadata. :func:`predict` is the low-level path for callers who
choose the normalisation and the scale themselves (by default each image at its own size); ``train.evaluate`` uses
its pieces (it also needs the logits, for its loss). Logits are always upsampled before the argmax (never the argmax
of low-resolution logits upsampled), as in the paper's evaluation. Its pieces: :func:`working_size` (the shorter
side scaled to a checkpoint's working scale, the longer side down to at most ``max_side``), :func:`resize_images`,
:func:`upsample_logits` and :func:`upsampled_argmax`.
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segformer.images import to_rgb
from segformer.model import SegFormer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Above this many upsampled logit values (128 MiB of float32) the argmax is taken band by band.
_BAND_THRESHOLD = 1 << 25


def working_size(
    height: int, width: int, max_side: int | None = None, *, short_side: int | None = None
) -> tuple[int, int]:
    """(height, width) the network sees: scaled (aspect kept, rounded, at least 1) so that the shorter side is
    ``short_side`` (up or down) when given, then down so that the longer side is at most ``max_side``; unchanged
    when neither applies."""
    scale = 1.0 if short_side is None else short_side / min(height, width)
    if max_side is not None:
        scale = min(scale, max_side / max(height, width))
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images (B, C, H, W) resized to ``size`` (bilinear, antialiased when shrinking); unchanged at that size."""
    if (x.shape[-2], x.shape[-1]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def check_images(images: torch.Tensor) -> None:
    """ValueError unless ``images`` are (B, 3, H, W), uint8 or float."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (batch, 3, height, width), got {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"expected uint8 or [0, 1] float images, got {images.dtype}")


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 or [0, 1] float images (B, 3, H, W) -> float32 (x / 255 - mean) / std."""
    check_images(images)
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def interpolation_matrix(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """(size_out, size_in) matrix R with R @ v == F.interpolate(v, size_out, bilinear, align_corners=False).

    Taken from F.interpolate itself, so its weights are exactly those of the direct upsampling.
    """
    eye = torch.eye(size_in, device=like.device)[None, None]
    matrix = F.interpolate(eye, size=(size_out, size_in), mode="bilinear", align_corners=False)[0, 0]
    return matrix.to(like.dtype)


def class_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Index of the largest logit along dim 1 (the first on ties, as argmax).

    ``max(1).indices`` gives the same indices as ``argmax(1)`` but is several times faster on CPU for few classes.
    """
    return logits.max(1).indices


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Logits (B, K, h, w) bilinearly upsampled to ``size`` (align_corners=False, as the reference implementation)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def upsampled_argmax(logits: torch.Tensor, size: tuple[int, int], band: int = 256) -> torch.Tensor:
    """argmax over classes of the logits (B, K, h, w) bilinearly upsampled to ``size``, as uint8 (B, H, W).

    The logits are upsampled in float32 whatever their dtype (bfloat16 under autocast, a half-precision model).
    Large outputs are computed in bands of rows, using the separable form of bilinear resampling
    (R_h @ L @ R_w^T), so a 12000 x 9000 mask never holds all its upsampled logits in memory.
    """
    logits = logits.float()
    batch, classes, h, w = logits.shape
    height, width = size
    if batch * classes * height * width <= _BAND_THRESHOLD:
        return class_argmax(upsample_logits(logits, size)).to(torch.uint8)
    rows = interpolation_matrix(h, height, logits)
    cols = interpolation_matrix(w, width, logits)
    horizontal = logits @ cols.T  # (B, K, h, W)
    labels = torch.empty(batch, height, width, dtype=torch.uint8, device=logits.device)
    for start in range(0, height, band):
        labels[:, start : start + band] = class_argmax(rows[start : start + band] @ horizontal)
    return labels


def as_images(images: torch.Tensor | np.ndarray | Image.Image) -> torch.Tensor:
    """What :func:`predict` accepts as a (3, H, W) or (B, 3, H, W) tensor (a view where it can be).

    A PIL image of any mode is converted to RGB as the app does (16-bit scaled, transparency over white; its EXIF
    orientation is not applied: the mask fits the pixels as given); a numpy array is one (H, W, 3) image.
    """
    if isinstance(images, Image.Image):
        images = np.array(to_rgb(images))
    if isinstance(images, np.ndarray):
        if images.ndim != 3 or images.shape[2] != 3:
            raise ValueError(f"expected a numpy image of shape (height, width, 3), got {images.shape}")
        # Copied only where not contiguous or read-only (torch warns on read-only arrays; predict never writes).
        return torch.from_numpy(np.require(images, requirements=("C", "W"))).permute(2, 0, 1)
    return images


@torch.inference_mode()
def predict(
    model: SegFormer,
    images: torch.Tensor | np.ndarray | Image.Image,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    max_side: int | None = None,
    short_side: int | None = None,
) -> torch.Tensor:
    """Class index per pixel, uint8 (B, H, W) (or (H, W) for one image), at the images' own size, at the scale the
    caller chooses (``segformer.Segmenter`` chooses it from a checkpoint's metadata, as the app does).

    ``images`` are RGB: a PIL image, a numpy (H, W, 3) array, or a (3, H, W) or (B, 3, H, W) tensor; uint8, or
    float in [0, 1]. The network sees them at :func:`working_size`: with ``short_side`` (a checkpoint's
    ``working_short_side``) scaled so the shorter side is that long, with ``max_side`` scaled down so the longer side
    is at most that (a bounded working size); the logits are still upsampled to the full size. Works under
    ``torch.autocast``, whose dtype the network then runs in.
    """
    images = as_images(images)
    single = images.ndim == 3
    logits = working_logits(model, images[None] if single else images, mean, std, max_side, short_side)
    labels = upsampled_argmax(logits, (images.shape[-2], images.shape[-1]))
    return labels[0] if single else labels


def working_logits(
    model: SegFormer,
    batch: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    max_side: int | None,
    short_side: int | None,
) -> torch.Tensor:
    """The network's logits (B, K, H/4, W/4 of the working size) for RGB images (B, 3, H, W): resized to
    :func:`working_size`, normalised, run in the model's device and dtype. What :func:`predict` and
    ``Segmenter.logits`` share before they upsample.

    The resize comes first, so that the normalisation runs on the working size rather than on a photo's own: the
    (antialiased) bilinear resize mixes each channel's pixels with weights that sum to one and the normalisation is
    per channel affine, so the order changes the network's input by rounding only (about 5e-7)."""
    check_images(batch)
    size = working_size(batch.shape[-2], batch.shape[-1], max_side, short_side=short_side)
    x = resize_images(batch.float(), size)
    x = normalise(x / 255.0 if batch.dtype == torch.uint8 else x, mean, std)
    param = next(model.parameters())
    return model(x.to(param.device, param.dtype))
