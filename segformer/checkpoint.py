"""Checkpoint I/O: safetensors weights + a JSON metadata file beside them, both written atomically.

A checkpoint ``NAME`` is the pair ``NAME.safetensors`` and ``NAME.json``. The metadata holds at least
``config`` (the MiT preset's fields) and ``num_classes``; training adds classes, palette, normalisation,
history and data summary. No pickle anywhere. Loading takes a stem or either file, or ``hf://ORG/REPO/NAME`` for a
checkpoint on the Hugging Face Hub (segformer.hub).
"""

import json
import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from segformer.config import MiTConfig
from segformer.hub import resolve_checkpoint
from segformer.images import MIN_SIDE
from segformer.model import SegFormer

#: The shipped checkpoint, in the repository's checkpoints/ folder: the default of the app, of ``python -m
#: segformer``, of the benchmarks and of the experiments.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "segformer-b0-4class"


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, metadata) file paths for a checkpoint given by its stem or either file."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name in the same folder (so the rename is atomic). Touching it first gives it the permissions a new
    # file gets here (umask applied); they are restored after ``write``, since some writers (safetensors) use 0600.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.touch(exist_ok=False)
        mode = tmp.stat().st_mode
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write a safetensors file (tensors made contiguous, shared storage broken)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def save_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1)))


def save_checkpoint(
    path: str | os.PathLike, model: SegFormer, metadata: dict[str, Any], *, dtype: torch.dtype | None = None
) -> None:
    """Write ``model``'s weights (cast floating tensors to ``dtype`` if given) and metadata."""
    weights_path, meta_path = checkpoint_paths(path)
    state = {
        k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    save_tensors(weights_path, state)
    dtype_name = str(dtype or next(model.parameters()).dtype).removeprefix("torch.")
    save_json(
        meta_path,
        {**metadata, "config": asdict(model.config), "num_classes": model.num_classes, "dtype": dtype_name},
    )


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, with a clear error when it is missing or not a checkpoint's."""
    _, meta_path = checkpoint_paths(resolve_checkpoint(path))
    if not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint metadata {meta_path} not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path} is not valid JSON: {err}") from err
    missing = [k for k in ("config", "num_classes") if k not in meta]
    if missing:
        raise ValueError(f"{meta_path} is not a SegFormer checkpoint's metadata: missing {', '.join(missing)}")
    return meta


def working_short_side(meta: dict[str, Any]) -> int | None:
    """The shorter side, in pixels, that a checkpoint's images are scaled to before its network (its metadata's
    ``working_short_side``, chosen on val), or None: each image at its own size."""
    value = meta.get("working_short_side")
    return None if value is None else checked_working_short_side(value)


def checked_working_short_side(value: object) -> int:
    """``value`` if it can be a working short side (an integer the encoder accepts as a side), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_SIDE:
        raise ValueError(f"working_short_side must be a positive integer of at least {MIN_SIDE}, got {value!r}")
    return value


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint weights {path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, naming every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} in {source}, {tuple(own[k].shape)} in the model"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    problems = [
        f"missing keys: {', '.join(missing)}" if missing else "",
        f"unexpected keys: {', '.join(unexpected)}" if unexpected else "",
        f"shape mismatches: {'; '.join(shapes)}" if shapes else "",
    ]
    if any(problems):
        raise ValueError(f"weights in {source} do not fit the model. " + " | ".join(p for p in problems if p))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


#: Config fields under their names in older checkpoints.
RENAMED_CONFIG_FIELDS = {"dropout": "classifier_dropout"}


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[SegFormer, dict]:
    """Build the model described by the metadata, load its weights (as float32), return (model in eval, metadata)."""
    weights_path, meta_path = checkpoint_paths(resolve_checkpoint(path))
    meta = read_metadata(meta_path)
    try:
        working_short_side(meta)
    except ValueError as err:
        raise ValueError(f"{meta_path}: {err}") from err
    fields = {
        RENAMED_CONFIG_FIELDS.get(k, k): tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()
    }
    try:
        config = MiTConfig(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{meta_path} has an invalid model config: {err}") from err
    model = SegFormer(config, int(meta["num_classes"]))
    load_state(model, load_tensors(weights_path), str(weights_path))
    return model.to(device).eval(), meta
