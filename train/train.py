"""Train SegFormer on the 4-class task with the paper's recipe (Section 4.1, "Implementation details").

    python -m train.train --data data/4class-256 --out runs/b0 --epochs 20 [--resume]
    torchrun --nproc_per_node 2 -m train.train --data ... --out ...        (DDP; gloo on CPU, nccl on CUDA)

Defaults are the paper's: AdamW, lr 6e-5 with the decoder head at 10x, weight decay 0.01, linear warmup then
poly decay (power 1.0), random resize 0.5-2.0, random crop, flip, photometric distortion, cross-entropy with
ignore index 255 (``--class-weight-power`` > 0 weights it toward rare classes; pixels with a partial label get the
marginal loss of train.losses; ``--copy-paste P`` adds Simple Copy-Paste). Every epoch appends train loss,
val loss, val mIoU, per-class IoU, pixel accuracy and the learning rate to a history saved with the checkpoint
and drawn as curves.png. ``OUT/last`` and ``OUT/best`` (by val mIoU) are checkpoints (safetensors + JSON);
``OUT/last-optimizer`` holds the optimizer and scheduler state so that ``--resume`` continues exactly: 2 epochs
== 1 epoch + resume 1 epoch. Each epoch reseeds every random generator from (seed, epoch), so no RNG state needs
saving. ``--init`` starts from the weights of an earlier checkpoint (whose history this run continues) or of a
transformers-layout Hub repo, such as the paper's ImageNet-pretrained encoder ``hf:nvidia/mit-b0``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, load_checkpoint, save_checkpoint
from segformer.checkpoint import checkpoint_paths, load_tensors, save_json, save_tensors
from segformer.predict import normalise
from segformer.transformers_weights import load_transformers_weights
from train.classes import CLASS_NAMES, PALETTE
from train.copy_paste import CopyPaste
from train.curves import save_curves
from train.data import SegmentationFolder, collate, train_transform
from train.evaluate import combine, evaluate
from train.losses import partial_cross_entropy


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as the checkpoint's ``recipe``."""

    data: tuple[str, ...] = ("data/4class-256",)
    out: str = "runs/b0"
    preset: str = "b0"
    crop_size: int = 256
    batch_size: int = 8
    epochs: int = 20
    lr: float = 6e-5
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    # Cross-entropy weight of class c proportional to frequency_c ** -power (0: unweighted, as the paper).
    class_weight_power: float = 0.0
    # Simple Copy-Paste (train.copy_paste): probability per crop, and the range of the pasted object's longer side
    # as a fraction of the crop's.
    copy_paste: float = 0.0
    copy_paste_min_scale: float = 0.2
    copy_paste_max_scale: float = 1.0
    workers: int = 2
    seed: int = 0
    limit: int | None = None  # use only the first N training images (tests, quick runs)
    # Start from these weights: a checkpoint of this project (path) or a Hub repo in the transformers layout
    # (hf:ORG/NAME, e.g. hf:nvidia/mit-b0 for the paper's ImageNet-pretrained encoder).
    init: str | None = None
    resume: bool = False
    stop_after: int | None = None  # end this process after that many epochs of the schedule (resume later)


# Fields that may change between a run and its --resume; every other field defines the run.
RESUMABLE_CHANGES = {"out", "resume", "stop_after", "workers"}


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup from warmup_ratio to 1 over warmup_iters, then poly decay to 0 at ``total`` (mmseg's)."""
    warmup = min(cfg.warmup_iters, total // 10) if total else 0
    poly = (1 - step / total) ** cfg.poly_power if total else 1.0
    if step < warmup:
        return poly * (cfg.warmup_ratio + (1 - cfg.warmup_ratio) * step / warmup)
    return poly


def build_optimizer(model: SegFormer, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the decoder at ``head_lr_mult`` x lr; norms and biases take no weight decay."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        head = name.startswith("decoder.")
        decay = param.ndim > 1
        groups.setdefault((head, decay), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": cfg.lr * (cfg.head_lr_mult if head else 1.0),
                "weight_decay": cfg.weight_decay if decay else 0.0,
            }
            for (head, decay), params in sorted(groups.items())
        ],
        lr=cfg.lr,
    )


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


def initialise(model: SegFormer, source: str) -> list[dict]:
    """Load starting weights from a checkpoint of this project (returning its history, which the run continues)
    or, for ``hf:ORG/NAME``, from a transformers-layout Hub repo (an encoder-only repo fills the encoder and
    leaves the decoder freshly initialised; no history)."""
    if source.startswith("hf:"):
        from huggingface_hub import hf_hub_download

        repo = source.removeprefix("hf:")
        load_transformers_weights(model, load_tensors(Path(hf_hub_download(repo, "model.safetensors"))), repo)
        return []
    start, meta = load_checkpoint(source)
    if start.config != model.config or start.num_classes != model.num_classes:
        raise ValueError(f"--init {source} is a different model (preset or classes) than this run's")
    model.load_state_dict(start.state_dict())
    return meta.get("history", [])


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


def data_summary(folders: Sequence[str]) -> dict:
    """Per folder: its manifest's counts (a prepared folder) or just its name."""
    summary = {}
    for folder in folders:
        manifest = Path(folder) / "manifest.json"
        info = json.loads(manifest.read_text()) if manifest.is_file() else {}
        summary[Path(folder).name] = {k: info[k] for k in ("counts", "short_side", "class_frequency") if k in info}
    return summary


def class_weights(folders: Sequence[str], power: float) -> torch.Tensor | None:
    """Cross-entropy class weights w_c = k * f_c ** -power, f_c the class's share of the labelled training pixels.

    k makes the mean weight of a training pixel, sum_c f_c w_c, equal to 1. Power 0 gives None (plain
    cross-entropy); 0.5 is inverse square-root frequency. The pixel counts come from the folders' manifests
    (train.prepare), so a raw folder cannot be weighted.
    """
    if power == 0:
        return None
    pixels = torch.zeros(len(CLASS_NAMES), dtype=torch.float64)
    for folder in folders:
        manifest = Path(folder) / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: class weights need the pixel counts of a folder from train.prepare")
        for counts in json.loads(manifest.read_text())["class_pixels"].values():
            pixels += torch.tensor([counts["train"][name] for name in CLASS_NAMES], dtype=torch.float64)
    if (pixels == 0).any():
        absent = [name for name, n in zip(CLASS_NAMES, pixels.tolist(), strict=True) if n == 0]
        raise ValueError(f"class weights: no training pixels of {', '.join(absent)}")
    frequency = pixels / pixels.sum()
    weights = frequency**-power
    return (weights / (frequency * weights).sum()).float()


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


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; return the final epoch's record."""
    rank, world, device = setup_distributed()
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    model = SegFormer.from_preset(cfg.preset, len(CLASS_NAMES))
    history: list[dict] = initialise(model, cfg.init) if cfg.init is not None else []
    inherited = len(history)  # epochs of the --init run, continued by this one
    model = model.to(device)
    optimizer = build_optimizer(model, cfg)
    start_epoch, step = 0, 0
    if (out / "last.json").is_file() and not cfg.resume:
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if cfg.resume:
        resumed, meta = load_checkpoint(out / "last", device=device)
        model.load_state_dict(resumed.state_dict())
        start_epoch, step = load_training_state(out / "last-optimizer", optimizer)
        history, inherited = meta["history"], meta.get("inherited_epochs", 0)
        if start_epoch != len(history) - inherited:
            raise ValueError(f"{out}: last checkpoint and optimizer state disagree on the epoch; delete one")
        now = json.loads(json.dumps(asdict(cfg)))
        changed = [k for k, v in now.items() if k not in RESUMABLE_CHANGES and meta["recipe"].get(k, v) != v]
        if changed:
            raise ValueError(f"--resume with different settings than {out}'s run: {', '.join(changed)}")
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        if world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # as the paper's mmseg recipe
    net = DistributedDataParallel(model) if world > 1 else model

    train_set: Dataset = ConcatDataset(
        [SegmentationFolder(folder, "train", train_transform(cfg.crop_size)) for folder in cfg.data]
    )
    if cfg.copy_paste > 0:
        sources = [SegmentationFolder(folder, "train") for folder in cfg.data]
        train_set = CopyPaste(train_set, sources, cfg.copy_paste, (cfg.copy_paste_min_scale, cfg.copy_paste_max_scale))
    if cfg.limit is not None:
        train_set = torch.utils.data.Subset(train_set, range(min(cfg.limit, len(train_set))))
    val_sets = {Path(folder).name: SegmentationFolder(folder, "val") for folder in cfg.data}
    batches_per_epoch = len(train_set) // (cfg.batch_size * world)
    total = batches_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, cfg), last_epoch=step - 1)

    weights = class_weights(cfg.data, cfg.class_weight_power)
    weights = None if weights is None else weights.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    record: dict = history[-1] if history else {}
    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, cfg.stop_after)
    for epoch in range(start_epoch, end_epoch):
        seed = cfg.seed * 100_003 + epoch
        torch.manual_seed(seed + rank)
        generator = torch.Generator().manual_seed(seed)
        sampler = (
            DistributedSampler(train_set, world, rank, shuffle=True, seed=seed, drop_last=True)
            if world > 1
            else RandomSampler(train_set, generator=generator)
        )
        loader = DataLoader(
            train_set,
            cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            collate_fn=collate,
            drop_last=True,
            generator=generator,
            persistent_workers=False,
        )
        net.train()
        loss_sum, started = torch.zeros(2, dtype=torch.float64, device=device), time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, leave=False)
        for images, masks in bar:
            images = normalise(images.to(device, non_blocking=True), IMAGENET_MEAN, IMAGENET_STD)
            masks = masks.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = net(images)
            full = F.interpolate(logits.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
            loss = partial_cross_entropy(full, masks, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += torch.stack([loss.detach().double(), torch.ones((), dtype=torch.float64, device=device)])
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if world > 1:
            dist.all_reduce(loss_sum)
            for buffer in model.buffers():  # BatchNorm statistics differ per rank: evaluate and save rank 0's
                dist.broadcast(buffer, 0)
        train_seconds = time.perf_counter() - started

        per_source = {
            name: evaluate(model, data, mean=IMAGENET_MEAN, std=IMAGENET_STD) for name, data in val_sets.items()
        }
        overall = combine(list(per_source.values()), CLASS_NAMES)
        record = {
            "epoch": inherited + epoch + 1,
            "step": step,
            "train_loss": (loss_sum[0] / loss_sum[1]).item(),
            "val_loss": overall["loss"],
            "val_miou": overall["miou"],
            "val_pixel_acc": overall["pixel_acc"],
            "val_per_class_iou": overall["per_class_iou"],
            "val_miou_per_source": {name: r["miou"] for name, r in per_source.items()},
            # Sources with partial labels (feral-cats): IoU counting predictions outside the admissible set.
            "val_iou_with_partial_per_source": {
                name: r["per_class_iou_with_partial"] for name, r in per_source.items() if r["partial_pixels"]
            },
            "lr": scheduler.get_last_lr()[0],
            "train_images_per_s": batches_per_epoch * cfg.batch_size * world / train_seconds,
            "epoch_seconds": time.perf_counter() - started,  # training and validation
        }
        history.append(record)
        if rank == 0:
            tqdm.write(json.dumps(record))
            metadata = {
                "preset": cfg.preset,
                "classes": list(CLASS_NAMES),
                "palette": [list(c) for c in PALETTE],
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "input_size": cfg.crop_size,
                "history": history,
                "inherited_epochs": inherited,
                "recipe": {**asdict(cfg), "world_size": world, "device": device.type},
                "data": data_summary(cfg.data),
                "code_version": code_version(),
            }
            save_training_state(out / "last-optimizer", optimizer, epoch + 1, step)
            save_checkpoint(out / "last", model, metadata)
            if record["val_miou"] >= max(h["val_miou"] for h in history[inherited:]):
                save_checkpoint(out / "best", model, metadata)
            save_curves(history, out / "curves.png")
    if world > 1:
        dist.destroy_process_group()
    return record


def parse_args(argv: Sequence[str] | None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m train.train", description=__doc__.split("\n")[0])
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if f.name == "data":
            parser.add_argument(flag, nargs="+", default=list(default), help="dataset folders (shared layout)")
        elif f.name in ("limit", "stop_after"):
            parser.add_argument(flag, type=int, default=None)
        elif f.name == "init":
            parser.add_argument(flag, default=None, help="starting weights: checkpoint path or hf:ORG/NAME")
        elif f.name == "resume":
            parser.add_argument(flag, action="store_true", help="continue the run in --out from its last epoch")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = vars(parser.parse_args(argv))
    return TrainConfig(**{**args, "data": tuple(args["data"])})


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    try:
        train(cfg)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
