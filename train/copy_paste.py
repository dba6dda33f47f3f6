"""Simple Copy-Paste augmentation (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for
Instance Segmentation", CVPR 2021), for semantic masks.

With probability ``probability`` a training crop receives the pixels of one object class (person/animal or
vehicle) cut from another training image with its mask, scaled so that the cut's longer side is a random fraction
(``scale``) of the crop's longer side, flipped at random and placed at a random position (its centre inside the
crop). Pasted pixels overwrite the target's image and labels; nothing else changes, so ignore stays ignore
outside the paste. Large fractions give the close-up subjects that the training sources lack, small ones the
distant people of street scenes. As in the paper, the cut is pasted as it is, without blending. A crop with teacher
targets (train.teacher_targets) gets, where pasted, the one-hot target of the pasted class: the teacher never saw
the pasted pixels, and their label is the truth.
"""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from task.classes import PERSON_ANIMAL, VEHICLE
from train.data import Sample, SegmentationFolder
from train.teacher_targets import SoftTarget

PASTED_CLASSES = (PERSON_ANIMAL, VEHICLE)
MIN_PIXELS = 64  # smaller cuts are specks, not objects


def paste(
    image: torch.Tensor,
    mask: torch.Tensor,
    cut_image: torch.Tensor,
    cut_mask: torch.Tensor,
    cut: torch.Tensor,
    top: int,
    left: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy ``cut_image`` / ``cut_mask`` where ``cut`` is true into image (3, H, W) / mask (H, W), the cut's
    top-left corner at (top, left), which may lie outside the target (the overhang is dropped)."""
    height, width = mask.shape
    h, w = cut.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, height), min(left + w, width)
    if y0 >= y1 or x0 >= x1:
        return image, mask
    window = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    where = cut[window]
    image, mask = image.clone(), mask.clone()
    image[:, y0:y1, x0:x1] = torch.where(where, cut_image[(slice(None), *window)], image[:, y0:y1, x0:x1])
    mask[y0:y1, x0:x1] = torch.where(where, cut_mask[window], mask[y0:y1, x0:x1])
    return image, mask


def paste_target(target: torch.Tensor, cls: int, cut: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Teacher probabilities (classes, H, W) with the one-hot of ``cls`` where ``cut`` lands, its top-left corner at
    (top, left), as :func:`paste` places it."""
    onehot = torch.zeros(target.shape[0], *cut.shape, dtype=target.dtype)
    onehot[cls] = 1
    return paste(target, torch.zeros(target.shape[1:], dtype=torch.bool), onehot, cut, cut, top, left)[0]


class CopyPaste(Dataset):
    """``targets[i]`` (already augmented crops) with, at random, an object pasted from one of ``sources``.

    ``sources`` are the same folders untransformed: the cut is taken from the full image. Randomness comes from
    torch's generator, so DataLoader workers seeded by the training loop reproduce it.
    """

    def __init__(
        self,
        targets: Dataset,
        sources: Sequence[SegmentationFolder],
        probability: float,
        scale: tuple[float, float],
    ) -> None:
        if not 0 <= probability <= 1 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"copy-paste: probability {probability} not in [0, 1] or scale range {scale} invalid")
        self.targets, self.sources = targets, list(sources)
        self.probability, self.scale = probability, scale
        self.objects: list[tuple[int, int, int]] = []  # (source, index, class) of every cut that can be pasted
        for s, source in enumerate(self.sources):
            for index, label_path in enumerate(source.label_paths):
                with Image.open(label_path) as lab:
                    counts = np.bincount(source.lut[np.asarray(lab)].ravel(), minlength=256)
                self.objects += [(s, index, c) for c in PASTED_CLASSES if counts[c] >= MIN_PIXELS]
        if probability > 0 and not self.objects:
            raise ValueError("copy-paste: no training image holds a person/animal or vehicle to paste")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Sample:
        sample = self.targets[index]
        if torch.rand(()) >= self.probability:
            return sample
        image, mask = sample[:2]
        s, source_index, cls = self.objects[int(torch.randint(len(self.objects), ()))]
        cut_image, cut_mask = self.sources[s][source_index]
        cut = cut_mask == cls
        rows, cols = cut.any(1).nonzero()[:, 0], cut.any(0).nonzero()[:, 0]
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        cut_image, cut = cut_image[box], cut[box[1:]]
        low, high = self.scale
        side = (low + (high - low) * torch.rand(()).item()) * max(mask.shape)
        factor = side / max(cut.shape)
        size = (max(1, round(cut.shape[0] * factor)), max(1, round(cut.shape[1] * factor)))
        cut_image = F.interpolate(cut_image[None].float(), size=size, mode="bilinear", antialias=True)[0]
        cut_image = cut_image.round().clamp(0, 255).to(image.dtype)
        cut = F.interpolate(cut[None, None].float(), size=size, mode="nearest")[0, 0].bool()
        cut_mask = torch.full(size, cls, dtype=mask.dtype)
        if torch.rand(()) < 0.5:
            cut_image, cut = cut_image.flip(-1), cut.flip(-1)
        height, width = mask.shape
        top = int(torch.randint(height, ())) - size[0] // 2
        left = int(torch.randint(width, ())) - size[1] // 2
        pasted_image, pasted_mask = paste(
            image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor), cut_image, cut_mask, cut, top, left
        )
        pasted = (type(image)(pasted_image), type(mask)(pasted_mask))
        if len(sample) == 2:
            return pasted
        return (*pasted, SoftTarget(paste_target(sample[2].as_subclass(torch.Tensor), cls, cut, top, left)))
