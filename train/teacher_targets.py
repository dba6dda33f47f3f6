"""The teachers' stored probabilities (written by train.teach) and how the teachers are fused.

A prepared folder holds, per image, one PNG per teacher (``teachers/<teacher>/<split>/<stem>.png``): the two class
teachers' 4-class probabilities as RGBA (channel c = round(255 p_c)), the selfie teacher's foreground probability as
one grey channel (round(255 p)). Training reads them through ``load_target``, fused by one of FUSIONS, as a
SoftTarget that the joint transforms resize, crop and flip with the image (its padding is all zeros: no target
there).
"""

import inspect
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors

from task.classes import PERSON_ANIMAL, VEHICLE

TEACHER_DIR = "teachers"
#: The two class teachers, then the selfie teacher, which knows only "the photo's prominent subject".
TEACHER_NAMES = ("ade20k", "voc", "selfie")


class SoftTarget(tv_tensors.Mask):
    """(NUM_CLASSES, H, W) float probabilities of a teacher, transformed like a mask (nearest resize); a pixel
    whose channels sum to 0 (crop padding) has no target."""


def encode(probs: torch.Tensor) -> bytes:
    """PNG bytes of (4, H, W) class probabilities as RGBA uint8 (255 p), or of a (1, H, W) foreground probability
    as grey uint8."""
    values = (probs.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    if values.shape[-1] == 1:
        Image.fromarray(values[..., 0], "L").save(buffer, "PNG")
    else:
        Image.fromarray(values, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def decode(path: Path) -> torch.Tensor:
    """The probabilities of a target PNG: (4, H, W) from RGBA, each pixel renormalised to sum to 1 (rounding), or
    (1, H, W) from grey."""
    with Image.open(path) as im:
        if im.mode not in ("RGBA", "L"):
            raise ValueError(f"teacher target is neither RGBA nor grey (mode {im.mode}): {path}")
        values = torch.from_numpy(np.array(im)).float()
    if values.ndim == 2:
        return values[None] / 255
    values = values.permute(2, 0, 1)
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


def _max_person(ade: torch.Tensor, voc: torch.Tensor) -> torch.Tensor:
    """(H, W) person/animal probability of the more confident of the two class teachers."""
    return torch.maximum(ade[PERSON_ANIMAL], voc[PERSON_ANIMAL])


def _near(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) bool: within ``radius`` pixels of a True pixel of ``mask`` (a square neighbourhood, by two separable
    max-pools)."""
    x = mask[None, None].float()
    x = F.max_pool2d(x, (2 * radius + 1, 1), stride=1, padding=(radius, 0))
    x = F.max_pool2d(x, (1, 2 * radius + 1), stride=1, padding=(0, radius))
    return x[0, 0] > 0


#: The selfie teacher's subject counts where it covers at least SUBJECT_SHARE of the photo, and at least
#: SUBJECT_AGREEMENT of its pixels are person/animal to the class teachers (each more likely than not); it trims the
#: class teachers' person/animal within SUBJECT_REACH of itself (a share of the shorter side: 12 pixels at 384).
SUBJECT_SHARE = 0.05
SUBJECT_AGREEMENT = 0.6
SUBJECT_REACH = 1 / 32


def _selfie_trimmed(ade: torch.Tensor, voc: torch.Tensor, selfie: torch.Tensor) -> torch.Tensor:
    """(H, W) max-person's person/animal, trimmed to the selfie teacher's outline of the photo's subject: within
    SUBJECT_REACH of the subject, the lower of the two probabilities, where the subject is large and the class
    teachers agree it is a person or an animal (SUBJECT_SHARE, SUBJECT_AGREEMENT). Elsewhere, and in photos without
    such a subject, nothing changes, so people the selfie teacher misses (small, distant) keep their targets."""
    person = _max_person(ade, voc)
    subject = selfie[0] > 0.5
    if subject.float().mean() >= SUBJECT_SHARE and (person[subject] > 0.5).float().mean() >= SUBJECT_AGREEMENT:
        near = _near(subject, max(1, round(min(person.shape) * SUBJECT_REACH)))
        person = torch.where(near, torch.minimum(person, selfie[0]), person)
    return person


#: Fusion rules, the targets of FUSION_TEACHERS[rule] in order -> probabilities, each (4, H, W). VOC has no outdoor
#: plants and misses small people, so no rule takes its background or plant; the rules differ in how much of its
#: person/animal they take, whether they take its vehicles, and whether the selfie teacher trims the outline of the
#: photo's prominent person or pet (docs in MODEL_CARD.md, chosen on val).
FUSIONS: dict[str, Callable[..., torch.Tensor]] = {
    "ade20k": lambda ade, voc: ade,
    # VOC's person/animal where it is the more confident teacher (close-up people and animals), ADE20K's elsewhere.
    "max-person": lambda ade, voc: _raised(ade, {PERSON_ANIMAL: _max_person(ade, voc)}),
    # The two teachers' person/animal averaged.
    "mean-person": lambda ade, voc: _raised(ade, {PERSON_ANIMAL: (ade[PERSON_ANIMAL] + voc[PERSON_ANIMAL]) / 2}),
    # max-person, and VOC's vehicles where it is the more confident teacher (everyday cars, buses, boats, planes).
    "max-person-vehicle": lambda ade, voc: _raised(
        ade, {c: torch.maximum(ade[c], voc[c]) for c in (PERSON_ANIMAL, VEHICLE)}
    ),
    # max-person trimmed to the selfie teacher's outline of a close-up person or pet (_selfie_trimmed).
    "selfie-trim": lambda ade, voc, selfie: _raised(ade, {PERSON_ANIMAL: _selfie_trimmed(ade, voc, selfie)}),
    # selfie-trim, and VOC's vehicles where it is the more confident teacher (as max-person-vehicle).
    "selfie-trim-vehicle": lambda ade, voc, selfie: _raised(
        ade, {PERSON_ANIMAL: _selfie_trimmed(ade, voc, selfie), VEHICLE: torch.maximum(ade[VEHICLE], voc[VEHICLE])}
    ),
}
#: The teachers whose targets each rule reads, in the order its function takes them: the first of TEACHER_NAMES,
#: as many as it has parameters.
FUSION_TEACHERS: dict[str, tuple[str, ...]] = {
    rule: TEACHER_NAMES[: len(inspect.signature(function).parameters)] for rule, function in FUSIONS.items()
}


def fuse(rule: str, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """The rule's fused (4, H, W) probabilities from the decoded targets by teacher name."""
    return FUSIONS[rule](*(targets[name] for name in FUSION_TEACHERS[rule]))


def load_target(folder: Path, split: str, stem: str, fusion: str) -> SoftTarget:
    """The fused teacher target of one prepared image."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown teacher fusion {fusion!r}; expected one of {', '.join(FUSIONS)}")
    return SoftTarget(fuse(fusion, read_targets(folder, split, stem, FUSION_TEACHERS[fusion])))


def read_targets(
    folder: Path, split: str, stem: str, teachers: Sequence[str] = TEACHER_NAMES
) -> dict[str, torch.Tensor]:
    """{teacher: decoded target} of one prepared image."""
    paths = {name: target_path(folder, name, split, stem) for name in teachers}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"no teacher target {missing[0]}: make the targets with python -m train.teach --data {folder}"
        )
    return {name: decode(p) for name, p in paths.items()}
