"""The app's checkpoint: a local path or ``hf://ORG/REPO/NAME`` (segformer.hub), loaded once and checked against
its metadata."""

from dataclasses import dataclass

import numpy as np
from huggingface_hub.errors import EntryNotFoundError

import segformer
from segformer.checkpoint import working_short_side
from segformer.hub import resolve_checkpoint
from segformer.model import SegFormer
from task.classes import CLASS_NAMES, PALETTE


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreachable or unfit for the app; the message names it."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with what the app needs from its metadata."""

    model: SegFormer
    metadata: dict
    source: str
    classes: tuple[str, ...]
    palette: np.ndarray  # (classes, 3) uint8
    mean: tuple[float, ...]
    std: tuple[float, ...]
    short_side: int | None  # the working scale: images' shorter side before the network, or None (own size)

    @property
    def parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())


def load_model(spec: str) -> LoadedModel:
    """Load the checkpoint ``spec`` (a path or ``hf://ORG/REPO/NAME``) and check that its metadata fits its model."""
    try:
        path = resolve_checkpoint(spec)
    except (EntryNotFoundError, OSError) as err:
        raise CheckpointError(f"cannot fetch checkpoint {spec} from the Hugging Face Hub: {err}") from err
    except ValueError as err:  # not of the form hf://ORG/REPO/NAME
        raise CheckpointError(str(err)) from err
    try:
        model, meta = segformer.load_checkpoint(path)
    except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"cannot load checkpoint {spec}: {err}") from err
    classes = tuple(meta.get("classes", CLASS_NAMES))
    palette = np.asarray(meta.get("palette", PALETTE), dtype=np.uint8)
    if not len(classes) == len(palette) == model.num_classes:
        raise CheckpointError(
            f"checkpoint {spec} does not fit the app: {model.num_classes} model outputs, "
            f"{len(classes)} class names and {len(palette)} palette colours in its metadata"
        )
    mean = tuple(meta.get("mean", segformer.IMAGENET_MEAN))
    std = tuple(meta.get("std", segformer.IMAGENET_STD))
    return LoadedModel(model, meta, spec, classes, palette, mean, std, working_short_side(meta))
