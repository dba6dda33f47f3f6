"""Segmenting a photo for the page: the checkpoint's ``segformer.Segmenter`` (the one prediction path) timed, the
share of each class, and the photo and mask at the size the page shows."""

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from segformer.predict import working_size
from segformer.segmenter import Segmenter
from task.classes import IGNORE_INDEX

#: Longer side of the overlay sent to the page (the downloadable mask stays at full size).
DISPLAY_SIDE = 1024


def segment(segmenter: Segmenter, rgb: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
    """(mask of class ids at the image's size, seconds in the segmenter, working (width, height))."""
    work_height, work_width = working_size(*rgb.shape[:2], segmenter.max_side, short_side=segmenter.short_side)
    start = time.perf_counter()
    mask = segmenter(rgb)
    return mask.numpy(), time.perf_counter() - start, (work_width, work_height)


def class_shares(mask: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Share of the pixels of each of ``classes`` (ids beyond them excluded), by name, summing to 1."""
    counts = np.array([np.count_nonzero(mask == c) for c in range(len(classes))], dtype=np.float64)
    return {name: float(share) for name, share in zip(classes, counts / max(counts.sum(), 1.0), strict=True)}


def downscale(rgb: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and mask (nearest) with the longer side at most ``max_side``."""
    height, width = working_size(*mask.shape, max_side)
    if (height, width) == mask.shape:
        return rgb, mask
    size = (width, height)
    image = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image), np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


def side_by_side(rgb: np.ndarray, mask: np.ndarray, gap: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The photo twice, ``gap`` white columns apart, with the mask on the right copy only (the ignore id, which an
    overlay leaves as the photo, on the left and in the gap): blended, it shows the photo beside its segmentation."""
    height = mask.shape[0]
    white = np.full((height, gap, 3), 255, dtype=np.uint8)
    unmasked = np.full((height, mask.shape[1] + gap), IGNORE_INDEX, dtype=mask.dtype)
    return np.concatenate([rgb, white, rgb], axis=1), np.concatenate([unmasked, mask], axis=1)


def working_rule(segmenter: Segmenter) -> str:
    """How the size the network ran at was chosen, for the page."""
    longer = "" if segmenter.max_side is None else f"longer side ≤ {segmenter.max_side}"
    if segmenter.short_side is None:
        return longer or "the photo's own size"
    return f"shorter side scaled to {segmenter.short_side}" + (f", {longer}" if longer else "")
