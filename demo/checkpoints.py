"""The app's checkpoint: a local path or ``hf://ORG/REPO/NAME``, loaded once and checked against its metadata."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

import segformer
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

    @property
    def parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())


def resolve_checkpoint(spec: str) -> Path:
    """Local stem of a checkpoint given as a path or ``hf://ORG/REPO/NAME`` (fetched with hf_hub_download).

    Both ``NAME.safetensors`` and ``NAME.json`` are fetched; they land in the same snapshot folder of the
    Hugging Face cache (honouring HF_HUB_CACHE and HF_HUB_OFFLINE).
    """
    if not spec.startswith("hf://"):
        return Path(spec)
    parts = spec.removeprefix("hf://").strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise CheckpointError(f"{spec}: expected hf://ORG/REPO/NAME (NAME.safetensors and NAME.json in the repo)")
    repo_id, name = "/".join(parts[:2]), "/".join(parts[2:]).removesuffix(".safetensors").removesuffix(".json")
    try:
        weights = hf_hub_download(repo_id, f"{name}.safetensors")
        hf_hub_download(repo_id, f"{name}.json")
    except (EntryNotFoundError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot fetch checkpoint {spec} from the Hugging Face Hub: {err}") from err
    return Path(weights).with_suffix("")


def load_model(spec: str) -> LoadedModel:
    """Load the checkpoint ``spec`` (see resolve_checkpoint) and check that its metadata fits its model."""
    path = resolve_checkpoint(spec)
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
    return LoadedModel(model, meta, spec, classes, palette, mean, std)
