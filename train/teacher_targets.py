"""The teachers' stored 4-class probabilities (written by train.teach) and how the two teachers are fused.

A prepared folder holds, per image, one RGBA PNG per teacher (``teachers/<teacher>/<split>/<stem>.png``, channel c
= round(255 p_c)). Training reads them through ``load_target``, fused by one of FUSIONS, as a SoftTarget that the
joint transforms resize, crop and flip with the image (its padding is all zeros: no target there).
"""

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from task.classes import PERSON_ANIMAL, VEHICLE

TEACHER_DIR = "teachers"
TEACHER_NAMES = ("ade20k", "voc")


class SoftTarget(tv_tensors.Mask):
    """(NUM_CLASSES, H, W) float probabilities of a teacher, transformed like a mask (nearest resize); a pixel
    whose channels sum to 0 (crop padding) has no target."""


def encode(probs: torch.Tensor) -> bytes:
    """PNG bytes of (4, H, W) probabilities as RGBA uint8 (255 p)."""
    values = (probs.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(values, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def decode(path: Path) -> torch.Tensor:
    """(4, H, W) float probabilities from a target PNG; each pixel renormalised to sum to 1 (rounding)."""
    with Image.open(path) as im:
        if im.mode != "RGBA":
            raise ValueError(f"teacher target is not RGBA (mode {im.mode}): {path}")
        values = torch.from_numpy(np.array(im)).permute(2, 0, 1).float()
    return values / values.sum(0, keepdim=True).clamp(min=1)


def target_path(folder: Path, teacher: str, split: str, stem: str) -> Path:
    return folder / TEACHER_DIR / teacher / split / f"{stem}.png"


def _raised(ade: torch.Tensor, taken: dict[int, torch.Tensor]) -> torch.Tensor:
    """ADE20K's distribution with the probabilities of the classes in ``taken`` replaced by theirs, the other classes
    rescaled to share what is left in their ADE20K proportions (renormalised where the taken ones sum over 1)."""
    kept = 1 - sum(ade[c] for c in taken)
    left = (1 - sum(taken.values())).clamp(min=0)
    fused = ade * (left / kept.clamp(min=1e-6))
    for c, p in taken.items():
        fused[c] = p
    return fused / fused.sum(0, keepdim=True).clamp(min=1e-6)


#: Fusion rules, (ADE20K probabilities, VOC probabilities) -> probabilities, each (4, H, W). VOC has no outdoor
#: plants and misses small people, so no rule takes its background or plant; the rules differ in how much of its
#: person/animal they take, and whether they take its vehicles (docs in MODEL_CARD.md, chosen on val).
FUSIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ade20k": lambda ade, voc: ade,
    # VOC's person/animal where it is the more confident teacher (close-up people and animals), ADE20K's elsewhere.
    "max-person": lambda ade, voc: _raised(ade, {PERSON_ANIMAL: torch.maximum(ade[PERSON_ANIMAL], voc[PERSON_ANIMAL])}),
    # The two teachers' person/animal averaged.
    "mean-person": lambda ade, voc: _raised(ade, {PERSON_ANIMAL: (ade[PERSON_ANIMAL] + voc[PERSON_ANIMAL]) / 2}),
    # max-person, and VOC's vehicles where it is the more confident teacher (everyday cars, buses, boats, planes).
    "max-person-vehicle": lambda ade, voc: _raised(
        ade, {c: torch.maximum(ade[c], voc[c]) for c in (PERSON_ANIMAL, VEHICLE)}
    ),
}


def load_target(folder: Path, split: str, stem: str, fusion: str) -> SoftTarget:
    """The fused teacher target of one prepared image."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown teacher fusion {fusion!r}; expected one of {', '.join(FUSIONS)}")
    paths = [target_path(folder, name, split, stem) for name in TEACHER_NAMES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"no teacher target {missing[0]}: make the targets with python -m train.teach --data {folder}"
        )
    ade, voc = (decode(p) for p in paths)
    return SoftTarget(FUSIONS[fusion](ade, voc))
