"""What a training run of train.train is: its config and flags, its saved optimizer state, and the records a
checkpoint keeps about its code, data and model."""

import argparse
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import torch
import torch.distributed as dist

from segformer import IMAGENET_MEAN, IMAGENET_STD
from segformer.checkpoint import checkpoint_paths, load_tensors, save_json, save_tensors
from task.classes import CLASS_NAMES, PALETTE, UNLABELLED_SOURCES
from train.teacher_targets import TEACHER_DIR


def option(default: object, help: str, **flag: object) -> Any:
    """A config field that is also a command-line flag: its default, its help text and any further settings of
    ``argparse.add_argument`` (``choices``); add_flags makes ``--the-field-name`` from it."""
    return field(default=default, metadata={"help": help, **flag})


@dataclass
class RunConfig:
    """What every run depends on, whatever its recipe (train.train's TrainConfig adds the rest); a run saves it with
    its weights."""

    data: tuple[str, ...] = option(("data/4class-256",), "dataset folders in the shared layout")
    out: str = option("runs/b0", "run folder")
    preset: str = option("b0", "MiT preset, b0..b5")
    crop_size: int = option(256, "square training crop, pixels")
    batch_size: int = option(8, "images per optimizer step (per process under DDP)")
    epochs: int = option(20, "length of the schedule")
    lr: float = option(6e-5, "peak learning rate (of the encoder, for train.train)")
    weight_decay: float = option(0.01, "AdamW weight decay (norms and biases take none)")
    warmup_iters: int = option(1500, "linear warmup steps, at most a tenth of the schedule")
    workers: int = option(2, "DataLoader worker processes")
    seed: int = option(0, "seeds initialisation, data order and augmentation")
    resume: bool = option(False, "continue the run in --out")
    stop_after: int | None = option(None, "end this process after N epochs (continue with --resume)")


def add_flags(parser: argparse.ArgumentParser, config: type) -> None:
    """One flag for each field of the dataclass ``config`` declared with ``option``, without a default (None: keep
    the config's, or the recipe's). The flag's type is the field's: a bool is a switch, ``X | None`` takes an X,
    ``tuple[X, ...]`` one or more."""
    hints = get_type_hints(config)
    for spec in fields(config):
        if "help" not in spec.metadata:
            continue
        name = "--" + spec.name.replace("_", "-")
        kind = hints[spec.name]
        if kind is bool:
            parser.add_argument(name, action="store_true", default=None, **spec.metadata)
            continue
        settings: dict = {}
        if type(None) in get_args(kind):
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        if get_origin(kind) is tuple:
            kind, settings["nargs"] = get_args(kind)[0], "+"
        parser.add_argument(name, type=kind, **settings, **spec.metadata)


def given_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> dict:
    """The flags given on the command line, as config fields (``data`` as a tuple)."""
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    if "data" in args:
        args["data"] = tuple(args["data"])
    return args


# Fields that may change between a run and its --resume; every other field defines the run.
RESUMABLE_CHANGES = {"out", "resume", "stop_after", "workers"}


def save_training_state(stem: Path, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> None:
    """Optimizer tensors in STEM.safetensors; epoch, step and param groups in STEM.json."""
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    weights, meta = checkpoint_paths(stem)
    save_tensors(weights, tensors)
    save_json(meta, {"epoch": epoch, "step": step, "param_groups": state["param_groups"]})


def load_training_state(stem: Path, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Restore the optimizer saved by save_training_state; return (epoch, step)."""
    weights, meta_path = checkpoint_paths(stem)
    meta = json.loads(meta_path.read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_tensors(weights).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["epoch"], meta["step"]


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_summary(folders: Sequence[str], teacher: bool = False) -> dict:
    """Per folder: its manifest's counts (a prepared folder) or just its name; with ``teacher``, the records of
    its teacher targets (model files and their sha256)."""
    summary = {}
    for folder in folders:
        manifest = Path(folder) / "manifest.json"
        info = json.loads(manifest.read_text()) if manifest.is_file() else {}
        summary[Path(folder).name] = {k: info[k] for k in ("counts", "short_side", "class_frequency") if k in info}
        if teacher:
            records = sorted((Path(folder) / TEACHER_DIR).glob("*.json"))
            summary[Path(folder).name]["teachers"] = {p.stem: json.loads(p.read_text()) for p in records}
    return summary


def is_labelled(folder: str) -> bool:
    """False for a prepared folder whose every source is unlabelled (task.classes.UNLABELLED_SOURCES): it has no
    val labels to score."""
    manifest = Path(folder) / "manifest.json"
    sources = json.loads(manifest.read_text()).get("sources", {}) if manifest.is_file() else {}
    return not sources or not set(sources) <= UNLABELLED_SOURCES


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join the torchrun process group if there is one; return (rank, world size, device)."""
    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return (dist.get_rank() if world > 1 else 0), world, device


def model_metadata(cfg: RunConfig) -> dict:
    """What a checkpoint of this task records about its model and inputs, whatever trained it."""
    return {
        "preset": cfg.preset,
        "classes": list(CLASS_NAMES),
        "palette": [list(c) for c in PALETTE],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "input_size": cfg.crop_size,
    }
