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
saving. ``--distill-weight W`` adds W times train.hints' feature loss against the ImageNet-pretrained
EfficientNet-Lite0 (its projections train at the decoder's rate and are saved in ``OUT/last-projections``);
``--teacher-weight W`` adds W times the KL to the segmentation teachers' stored targets (train.teach).
``--recipe distill`` is the hint stage before training (``python -m train.distill``): the same loop with the
segmentation loss at weight 0, so the encoder learns the feature hints alone from the training images (no labels
read, the decoder neither runs nor trains); its ``OUT/last`` holds a ``distillation`` record instead of a history,
and ``--init OUT/last`` starts training from the distilled encoder.
``--init`` starts from the weights of an earlier checkpoint (a path or ``hf://ORG/REPO/NAME``, whose history this run
continues) or of a transformers-layout Hub repo, such as the paper's ImageNet-pretrained encoder
``transformers://nvidia/mit-b0`` (segformer.hub).
``--recipe scratch`` starts from the recipe that trained the shipped model's first stage from random weights.
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, RandomSampler

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, load_checkpoint, save_checkpoint
from segformer.allocator import keep_freed_memory
from segformer.checkpoint import load_state, load_tensors, save_tensors
from segformer.config import VARIANTS, MiTConfig, given_variants, preset
from segformer.hub import TRANSFORMERS_PREFIX
from segformer.model import reference_init
from segformer.predict import normalise, upsample_logits
from segformer.segmenter import Segmenter
from segformer.transformers_weights import load_from_hub
from task.classes import CLASS_NAMES, PALETTE
from task.curves import save_curves
from train.copy_paste import CopyPaste
from train.data import (
    SegmentationFolder,
    TrainImages,
    WithClassWeights,
    collate,
    image_transform,
    train_transform,
)
from train.evaluate import combine, evaluate
from train.losses import ON_LABELLED, partial_cross_entropy, teacher_kl
from train.lovasz import lovasz_softmax
from train.progress import progress
from train.runs import (
    RESUMABLE_CHANGES,
    RunConfig,
    add_flags,
    code_version,
    data_summary,
    given_flags,
    is_labelled,
    load_training_state,
    model_metadata,
    option,
    save_training_state,
    setup_distributed,
)
from train.teacher_targets import FUSIONS

if TYPE_CHECKING:
    from train.hints import Hints


def add_variant_flags(parser: argparse.ArgumentParser) -> None:
    """The design variants of segformer.config.MiTConfig (VARIANTS); None where not given: the paper's."""
    parts = ("encoder", "decoder")
    groups = {part: parser.add_argument_group(f"{part} variants (default: the paper's)") for part in parts}
    for variant in VARIANTS:
        groups[variant.part].add_argument(
            "--" + variant.field.replace("_", "-"),
            type=variant.type,
            choices=variant.choices or None,
            nargs=variant.count if variant.count > 1 else None,
            help=variant.help,
        )


LOSSES = ("ce", "lovasz", "ce+lovasz")
AUGMENTATIONS = ("segmentation", "images")
SCHEDULES = ("poly", "cosine")


@dataclass
class TrainConfig(RunConfig):
    """Everything a run depends on; saved as the checkpoint's ``recipe``. The defaults are the paper's recipe.

    Each field declared with ``option`` is also the flag ``--the-field-name`` (train.runs.add_flags); ``recipe``
    and the design variants (segformer.config.VARIANTS) have flags of their own."""

    recipe: str = "paper"  # the named recipe these settings started from (RECIPES)
    head_lr_mult: float = option(10.0, "the decoder's learning rate as a multiple of --lr")
    # Cross-entropy weight of class c proportional to frequency_c ** -power (0: unweighted, as the paper).
    class_weight_power: float = option(0.0, "weight class c's loss by frequency_c ** -P (0: off)")
    # Per folder, a further factor on each class's loss (train.data.WithClassWeights): FOLDER=W0,W1,W2,W3 in the
    # order of task.classes.CLASS_NAMES, e.g. the three sources' small people weighted up without the close-ups.
    folder_class_weights: tuple[str, ...] = option(
        (), "FOLDER=W,W,W,W: multiply the loss of that folder's labelled pixels of each class (in class order)"
    )
    # Simple Copy-Paste (train.copy_paste): probability per crop, and the range of the pasted object's longer side
    # as a fraction of the crop's.
    copy_paste: float = option(0.0, "probability of Simple Copy-Paste per crop (0: off)")
    copy_paste_min_scale: float = option(0.2, "smallest pasted object: longer side / crop's")
    copy_paste_max_scale: float = option(1.0, "largest pasted object, likewise")
    # The random resize draws the short side from 0.5-2.0 x base_size (None: crop_size). A crop smaller than the
    # prepared images' short side with base_size at that short side keeps the image scale (short ablation runs).
    base_size: int | None = option(None, "random resize to 0.5-2x this short side (default: crop)")
    limit: int | None = option(None, "use only the first N training images (tests, quick runs)")
    # Start from these weights: a checkpoint of this project (a path, or hf://ORG/REPO/NAME on the Hub) or a Hub repo
    # in the transformers layout (transformers://ORG/REPO, e.g. transformers://nvidia/mit-b0 for the paper's
    # ImageNet-pretrained encoder).
    init: str | None = option(None, "a checkpoint (path or hf://ORG/REPO/NAME), or transformers://ORG/REPO")
    # Load only the encoder from --init (the decoder starts fresh, and may be another design), and/or keep the
    # encoder fixed and train only the decoder.
    init_encoder_only: bool = option(False, "take only --init's encoder")
    freeze_encoder: bool = option(False, "train only the decoder")
    # Initialisation of a model that starts from random weights: PyTorch's defaults, or the reference code's
    # (segformer.model.reference_init).
    weight_init: str = option("pytorch", "init of random weights (no --init)", choices=("pytorch", "reference"))
    # Design variants of the network (segformer.config.MiTConfig; None keeps the preset's, which is the paper's).
    patch_merging: str | None = None
    sr_ratios: tuple[int, int, int, int] | None = None
    ffn_activations: int | None = None
    ffn_padding: str | None = None
    mlp_ratio: float | None = None
    token_mixer: str | None = None
    decoder: str | None = None
    decoder_dim: int | None = None
    # "ce": the cross-entropy (the paper's, with partial labels); "lovasz": the Lovasz-softmax surrogate of IoU
    # (Berman et al. 2018); "ce+lovasz": their sum. Its weight in the step's loss: 0 is the hint stage (the
    # ``distill`` recipe), where the encoder runs alone, the decoder does not train and no labels are needed.
    loss: str = option("ce", "ce (the paper's), lovasz (an IoU surrogate) or their sum", choices=LOSSES)
    segmentation_weight: float = option(1.0, "weight of that loss (0: the hint stage, no decoder, no labels)")
    # Weight of train.hints' loss (the encoder's stage features against EfficientNet-Lite0's, through 1x1
    # projections) added at every step; 0: off, and the teacher is not loaded.
    distill_weight: float = option(0.0, "add W x the feature-hint loss of train.hints (0: off)")
    # Pixel-wise distillation from the segmentation teachers' stored targets (train.teach): teacher_weight x
    # train.losses.teacher_kl at teacher_temperature is added to the segmentation loss, the two teachers fused by
    # the rule ``teacher`` (train.teacher_targets.FUSIONS); weight 0: off, and no target is read.
    # teacher_on_labelled: "all" single-class pixels have the teacher's target, only those where it "agree"s with
    # the label, or "none" of them (the teacher teaches only the pixels nobody labelled).
    teacher: str = option("max-person", "how the teachers' targets are fused", choices=sorted(FUSIONS))
    # Per folder, another rule than ``teacher`` (e.g. VOC's vehicles in the everyday photos alone).
    folder_teachers: tuple[str, ...] = option((), "FOLDER=FUSION: that folder's targets fused by FUSION instead")
    teacher_weight: float = option(0.0, "add W x the KL to the stored teacher targets of train.teach (0: off)")
    teacher_temperature: float = option(1.0, "temperature of that KL")
    teacher_on_labelled: str = option(
        "all",
        "labelled pixels with a teacher target: all, only where the teacher's argmax agrees with the label, or none",
        choices=ON_LABELLED,
    )
    # bfloat16 autocast on the CPU too (on CUDA it is always on); worth it where the CPU has AMX.
    cpu_bf16: bool = option(False, "bfloat16 autocast on the CPU (AMX)")
    # "segmentation": train.data.train_transform on images and labels (the paper's); "images": the training images
    # alone through train.data.image_transform (the hint stage's).
    augment: str = option("segmentation", "segmentation (images and labels) or images (alone)", choices=AUGMENTATIONS)
    # After the linear warmup: "poly" decay (mmseg's, the paper's) or "cosine" (DeiT's, the hint stage's).
    schedule: str = option("poly", "the decay after the warmup: poly (the paper's) or cosine", choices=SCHEDULES)

    @property
    def hint_stage(self) -> bool:
        """Whether the run learns the feature hints alone (segmentation weight 0): no decoder, no validation."""
        return self.segmentation_weight == 0


#: Named recipes: each overrides TrainConfig's defaults (the paper's), and flags override the recipe.
RECIPES: dict[str, dict] = {
    # Section 4.1 for an ImageNet-pretrained encoder (--init transformers://nvidia/mit-b0): AdamW lr 6e-5, decoder 10x.
    "paper": {},
    # From random weights, as the shipped checkpoint began (train/recipes/b0-4class.sh, stage 1): nothing is
    # pretrained, so the encoder takes 10x the paper's rate and the decoder no multiplier; a shorter warmup.
    "scratch": {"lr": 6e-4, "head_lr_mult": 1.0, "warmup_iters": 350, "epochs": 10},
    # The hint stage (python -m train.distill): EfficientNet-Lite0's features taught to a fresh encoder from images
    # alone at the teacher's ImageNet resolution, with AdamW as DeiT trains a transformer student (Touvron et al.
    # 2021) and a shorter warmup for a short run; one loader worker leaves the other core to the two networks.
    "distill": {
        "segmentation_weight": 0.0, "distill_weight": 1.0, "augment": "images", "schedule": "cosine",
        "lr": 1e-3, "head_lr_mult": 1.0, "weight_decay": 0.05, "warmup_iters": 500,
        "crop_size": 224, "batch_size": 16, "workers": 1, "out": "runs/distill",
    },
}  # fmt: skip


def from_recipe(name: str, **fields: object) -> TrainConfig:
    """The config of recipe ``name`` (RECIPES) with ``fields`` changed."""
    return TrainConfig(**{**RECIPES[name], **fields, "recipe": name})


WARMUP_RATIO = 1e-6  # the rate starts at this fraction of lr (mmseg's)
POLY_POWER = 1.0  # poly decay (1 - step / total) ** power (mmseg's)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup from WARMUP_RATIO to 1 over warmup_iters, then decay to 0 at ``total``: poly over the whole
    schedule, the warmup scaled by it (mmseg's), or cosine after the warmup (DeiT's).

    The warmup is capped at a tenth of the schedule, so that a short run (a probe, a test) still spends most of its
    steps at the full rate instead of warming up throughout.
    """
    warmup = min(cfg.warmup_iters, total // 10) if total else 0
    if cfg.schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * max(step - warmup, 0) / max(total - warmup, 1)))
    else:
        decay = (1 - step / total) ** POLY_POWER if total else 1.0
    if step < warmup:
        return decay * (WARMUP_RATIO + (1 - WARMUP_RATIO) * step / warmup)
    return decay


def build_optimizer(model: SegFormer, cfg: TrainConfig, heads: Sequence[nn.Module] = ()) -> torch.optim.AdamW:
    """AdamW with the decoder (and ``heads``, e.g. distillation projections) at ``head_lr_mult`` x lr; norms and
    biases take no weight decay."""
    params = [(name.startswith("decoder."), p) for name, p in model.named_parameters()]
    params += [(True, p) for head in heads for p in head.parameters()]
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for head, param in params:
        if not param.requires_grad:
            continue
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


def initialise(model: SegFormer, source: str, encoder_only: bool = False) -> list[dict]:
    """Load starting weights from a checkpoint of this project (a path or ``hf://ORG/REPO/NAME``; returning its
    history, which the run continues) or, for ``transformers://ORG/REPO``, from a transformers-layout Hub repo (an
    encoder-only repo fills the encoder and leaves the decoder freshly initialised; no history). ``encoder_only``
    takes only a checkpoint's encoder, which must be the same design; the decoder keeps its fresh weights and no
    history is inherited."""
    if source.startswith(TRANSFORMERS_PREFIX):
        load_from_hub(model, source.removeprefix(TRANSFORMERS_PREFIX))
        return []
    start, meta = load_checkpoint(source)
    if encoder_only:
        if replace(start.config, decoder=model.config.decoder, decoder_dim=model.config.decoder_dim) != model.config:
            raise ValueError(f"--init {source}: its encoder is a different design than this run's")
        model.encoder.load_state_dict(start.encoder.state_dict())
        return []
    # Mix-FFN's padding holds no weights: a model may be trained on under another padding (Q4's padding arms).
    same_design = replace(start.config, ffn_padding=model.config.ffn_padding) == model.config
    if not same_design or start.num_classes != model.num_classes:
        raise ValueError(f"--init {source} is a different model (preset or classes) than this run's")
    model.load_state_dict(start.state_dict())
    return meta.get("history", [])


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


T = TypeVar("T")


def per_folder(flag: str, entries: Sequence[str], data: Sequence[str], parse: Callable[[str], T]) -> dict[str, T]:
    """{folder: parse(VALUE)} of the FOLDER=VALUE ``entries`` of ``flag``: each folder one of ``data``, at most
    once; ``parse`` raises ValueError with what VALUE should be."""
    values: dict[str, T] = {}
    for entry in entries:
        folder, _, value = entry.partition("=")
        try:
            parsed = parse(value)
        except ValueError as err:
            raise ValueError(f"{flag} {entry!r}: expected FOLDER={err}") from None
        if folder not in data:
            raise ValueError(f"{flag} {entry!r}: {folder} is not one of --data")
        if folder in values:
            raise ValueError(f"{flag}: {folder} is given twice")
        values[folder] = parsed
    return values


def fusion_rule(value: str) -> str:
    """``value`` if it names one of train.teacher_targets.FUSIONS."""
    if value not in FUSIONS:
        raise ValueError(f"FUSION, one of {', '.join(FUSIONS)}")
    return value


def class_factors(value: str) -> torch.Tensor:
    """(C,) factors from ``value``, one weight >= 0 per class, comma-separated in task.classes.CLASS_NAMES' order."""
    expected = f"{','.join(['W'] * len(CLASS_NAMES))}, a weight >= 0 for each of {', '.join(CLASS_NAMES)}"
    try:
        weights = torch.tensor([float(v) for v in value.split(",")])
    except ValueError:
        raise ValueError(expected) from None
    if len(weights) != len(CLASS_NAMES) or not (weights.isfinite() & (weights >= 0)).all():
        raise ValueError(expected)
    return weights


def folder_teachers(cfg: TrainConfig) -> dict[str, str | None]:
    """{folder: its fusion rule} for every folder of ``--data``: ``--teacher``, or ``--folder-teachers``' rule
    for the folders it names; None for all without a teacher weight."""
    rules = per_folder("--folder-teachers", cfg.folder_teachers, cfg.data, fusion_rule)
    if rules and cfg.teacher_weight == 0:
        raise ValueError("--folder-teachers needs the teachers' targets: give --teacher-weight")
    if cfg.teacher_weight == 0:
        return dict.fromkeys(cfg.data)
    if cfg.teacher not in FUSIONS:
        raise ValueError(f"unknown --teacher {cfg.teacher!r}; expected one of {', '.join(FUSIONS)}")
    return {folder: rules.get(folder, cfg.teacher) for folder in cfg.data}


def folder_class_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """{folder: (C,) factors} of ``--folder-class-weights FOLDER=W,W,W,W`` (each folder one of ``--data``)."""
    return per_folder("--folder-class-weights", cfg.folder_class_weights, cfg.data, class_factors)


@dataclass
class Run:
    """What a run carries from epoch to epoch."""

    model: SegFormer
    net: nn.Module  # the model, wrapped for DDP when there are several processes
    optimizer: torch.optim.AdamW
    history: list[dict]
    inherited: int  # epochs of the --init run, continued by this one
    start_epoch: int
    step: int
    hints: "Hints | None" = None  # the teacher and projections of --distill-weight


def model_config(cfg: TrainConfig) -> MiTConfig:
    """The preset with the run's design variants (the paper's where none is given)."""
    return replace(preset(cfg.preset), **given_variants(vars(cfg)))


def segmentation_loss(
    logits: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None, loss: str
) -> torch.Tensor:
    """The training loss of full-resolution logits: cross-entropy, Lovasz-softmax or their sum."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    terms = loss.split("+")
    total = partial_cross_entropy(logits, masks, weight=weights) if "ce" in terms else 0
    return total + lovasz_softmax(logits, masks) if "lovasz" in terms else total


def training_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    targets: torch.Tensor | None,
    weights: torch.Tensor | None,
    cfg: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the step's loss, its teacher term): ``cfg.segmentation_weight`` x the segmentation loss plus, with teacher
    ``targets``, ``cfg.teacher_weight`` x train.losses.teacher_kl; without targets no teacher term."""
    loss = cfg.segmentation_weight * segmentation_loss(logits, masks, weights, cfg.loss)
    if targets is None:
        return loss, None
    kd = teacher_kl(logits, masks, targets, cfg.teacher_temperature, cfg.teacher_on_labelled)
    return loss + cfg.teacher_weight * kd, kd


def start_or_resume(cfg: TrainConfig, device: torch.device, world: int) -> Run:
    """Build the model and optimizer: fresh, from ``--init`` weights, or from ``OUT/last`` with ``--resume``."""
    check_settings(cfg, world)
    torch.manual_seed(cfg.seed)
    model = SegFormer(model_config(cfg), len(CLASS_NAMES))
    if cfg.weight_init == "reference":
        reference_init(model)
    history: list[dict] = initialise(model, cfg.init, cfg.init_encoder_only) if cfg.init is not None else []
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    if cfg.hint_stage:
        model.decoder.requires_grad_(False)  # it does not run: it stays as it started
    model = model.to(device)
    hints = None
    if cfg.distill_weight > 0:
        from train.hints import Hints  # the teacher's packages are needed only here (requirements-distill.txt)

        hints = Hints(model.config.widths, device)
    optimizer = build_optimizer(model, cfg, [hints.project] if hints else [])
    run = Run(model, model, optimizer, history, len(history), 0, 0, hints)
    if (Path(cfg.out) / "last.json").is_file() and not cfg.resume:
        raise ValueError(f"{cfg.out} already holds a run: pass --resume to continue it, or choose another --out")
    if cfg.resume:
        resume(run, cfg, device)
    if device.type == "cuda":
        run.model = run.model.to(memory_format=torch.channels_last)
        if world > 1:
            run.model = nn.SyncBatchNorm.convert_sync_batchnorm(run.model)  # as the paper's mmseg recipe
    run.net = DistributedDataParallel(run.model) if world > 1 else run.model
    return run


def check_settings(cfg: TrainConfig, world: int) -> None:
    """Refuse a run whose loss has nothing to learn from, a term that its data or its stage cannot give, or an
    unknown schedule or augmentation."""
    if cfg.hint_stage and cfg.distill_weight == 0:
        raise ValueError("a segmentation weight of 0 leaves nothing to learn: give --distill-weight")
    if cfg.hint_stage and cfg.teacher_weight > 0:
        raise ValueError("the teacher targets need the decoder, which does not run at a segmentation weight of 0")
    if cfg.hint_stage and world > 1:
        raise ValueError("the hint stage (segmentation weight 0) runs in one process")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if cfg.augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {cfg.augment!r}; expected one of {', '.join(AUGMENTATIONS)}")
    if cfg.augment == "images" and (not cfg.hint_stage or cfg.copy_paste > 0 or cfg.folder_class_weights):
        raise ValueError(
            "--augment images reads no labels: it needs a segmentation weight of 0, and no --copy-paste or "
            "--folder-class-weights"
        )
    folder_teachers(cfg)
    folder_class_weights(cfg)


def resume(run: Run, cfg: TrainConfig, device: torch.device) -> None:
    """Load ``OUT/last`` and its optimizer (and projections) state into ``run``, after checking that it is this
    run: the same settings (but RESUMABLE_CHANGES), and a checkpoint and optimizer state of the same epoch."""
    out = Path(cfg.out)
    resumed, meta = load_checkpoint(out / "last", device=device)
    run.model.load_state_dict(resumed.state_dict())
    try:
        run.start_epoch, run.step = load_training_state(out / "last-optimizer", run.optimizer)
    except ValueError as err:
        raise ValueError(f"{out}: its optimizer state does not fit this run's optimizer ({err})") from err
    if run.hints is not None:
        projections = out / "last-projections.safetensors"
        load_state(run.hints.project, load_tensors(projections), str(projections))
    record = meta.get("distillation", meta)  # a hint stage's record (checkpoint_metadata)
    run.history, run.inherited = record["history"], meta.get("inherited_epochs", 0)
    if run.start_epoch != len(run.history) - run.inherited:
        raise ValueError(f"{out}: last checkpoint and optimizer state disagree on the epoch; delete one")
    changed = changed_settings(cfg, record["recipe"])
    if changed:
        raise ValueError(f"--resume with different settings than {out}'s run: {', '.join(changed)}")


def changed_settings(cfg: TrainConfig, recipe: dict) -> list[str]:
    """The fields of ``cfg`` that differ from a run's recorded ``recipe``, but RESUMABLE_CHANGES and the fields the
    recipe lacks (a run recorded before they existed)."""
    now = json.loads(json.dumps(asdict(cfg)))
    return [k for k, v in now.items() if k not in RESUMABLE_CHANGES and recipe.get(k, v) != v]


def training_set(cfg: TrainConfig) -> Dataset:
    """The train splits of every folder, augmented (and with Copy-Paste when asked), each item with its folder's
    class weights when ``--folder-class-weights`` gives any, cut to ``--limit``; for ``--augment images`` their
    images alone."""
    teachers = folder_teachers(cfg)
    if cfg.augment == "images":
        train_set: Dataset = TrainImages(cfg.data, image_transform(cfg.crop_size))
    else:
        transform = train_transform(cfg.crop_size, cfg.base_size)
        folders = [SegmentationFolder(folder, "train", transform, teachers[folder]) for folder in cfg.data]
        train_set = ConcatDataset(folders)
        if cfg.copy_paste > 0:  # item i stays the concatenation's item i
            sources = [SegmentationFolder(folder, "train") for folder in cfg.data]
            scale = (cfg.copy_paste_min_scale, cfg.copy_paste_max_scale)
            train_set = CopyPaste(train_set, sources, cfg.copy_paste, scale)
        factors = folder_class_weights(cfg)
        if factors:
            ones = torch.ones(len(CLASS_NAMES))
            per_item = [factors.get(name, ones).expand(len(f), -1) for name, f in zip(cfg.data, folders, strict=True)]
            train_set = WithClassWeights(train_set, torch.cat(per_item))
    if cfg.limit is not None:
        train_set = torch.utils.data.Subset(train_set, range(min(cfg.limit, len(train_set))))
    return train_set


def epoch_loader(train_set: Dataset, cfg: TrainConfig, epoch: int, rank: int, world: int) -> DataLoader:
    """This epoch's batches; every random generator is seeded from (seed, epoch), so resuming needs no RNG state."""
    seed = cfg.seed * 100_003 + epoch
    torch.manual_seed(seed + rank)
    generator = torch.Generator().manual_seed(seed)
    sampler = (
        DistributedSampler(train_set, world, rank, shuffle=True, seed=seed, drop_last=True)
        if world > 1
        else RandomSampler(train_set, generator=generator)
    )
    return DataLoader(
        train_set,
        cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        drop_last=True,
        generator=generator,
        persistent_workers=False,
    )


def train_one_epoch(
    run: Run,
    loader: DataLoader,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    weights: torch.Tensor | None,
    cfg: TrainConfig,
    device: torch.device,
    description: str,
    show: bool,
) -> torch.Tensor:
    """One pass over ``loader``; returns (summed loss, batches, summed hint loss, summed teacher loss) in float64,
    to be reduced across ranks. Each step's loss is step_loss's; the encoder's stage outputs for the hints are taken
    by a forward hook, so that DDP's wrapper still runs the whole model."""
    run.net.train()
    if not any(p.requires_grad for p in run.model.encoder.parameters()):
        run.model.encoder.eval()  # frozen: no stochastic depth either
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cfg.cpu_bf16)
    loss_sum = torch.zeros(4, dtype=torch.float64, device=device)
    stages: list[list[torch.Tensor]] = []
    hook = (
        run.model.encoder.register_forward_hook(lambda _module, _input, output: stages.append(output[0]))
        if run.hints is not None
        else None
    )
    for batch in progress(loader, description, unit="batches") if show else loader:
        raw, *labels = (part.to(device, non_blocking=True) for part in batch)
        images = normalise(raw, IMAGENET_MEAN, IMAGENET_STD)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            if cfg.hint_stage:  # the encoder alone (the hook takes its stage outputs)
                run.model.encoder(images)
                logits = None
            else:
                logits = run.net(images)
        loss, hint, kd = step_loss(run, raw, logits, labels, stages.pop() if stages else [], weights, cfg)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.hints is not None and dist.is_initialized():  # the projections sit outside DDP's wrapper
            for param in run.hints.project.parameters():
                dist.all_reduce(param.grad)
                param.grad /= dist.get_world_size()
        run.optimizer.step()
        scheduler.step()
        run.step += 1
        loss_sum += torch.stack([loss.detach(), torch.ones((), device=device), hint.detach(), kd.detach()]).double()
    if hook is not None:
        hook.remove()
    return loss_sum


def step_loss(
    run: Run,
    raw: torch.Tensor,
    logits: torch.Tensor | None,
    labels: Sequence[torch.Tensor],
    stages: Sequence[torch.Tensor],
    weights: torch.Tensor | None,
    cfg: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the step's loss, its hint term, its teacher term; a term the run does not have is 0): training_loss of the
    logits against the batch's ``labels`` (masks, teacher targets when it has them, and last the (B, C) factors
    of --folder-class-weights on the class ``weights``; no logits in the hint stage), plus ``cfg.distill_weight``
    x the hint loss of the encoder's ``stages`` for the uint8 images ``raw``."""
    zero = torch.zeros((), device=raw.device)
    loss, kd = zero, zero
    if logits is not None:
        if cfg.folder_class_weights:  # each image's (C,) factors come last (WithClassWeights)
            *labels, factors = labels
            weights = factors if weights is None else weights * factors
        masks, *targets = labels
        full = upsample_logits(logits.float(), masks.shape[-2:])
        loss, teacher_term = training_loss(full, masks, targets[0] if targets else None, weights, cfg)
        kd = zero if teacher_term is None else teacher_term
    hint = zero
    if run.hints is not None:
        hint = run.hints.loss([f.float() for f in stages], raw)
        loss = loss + cfg.distill_weight * hint
    return loss, hint, kd


def epoch_record(
    run: Run,
    epoch: int,
    loss_sum: torch.Tensor,
    lr: float,
    images: int,
    train_seconds: float,
    per_source: dict,
    teacher: bool = False,
) -> dict:
    """The history entry of one epoch: losses, validation scores (each folder and all together; none without
    ``per_source``, as in the hint stage), speed."""
    return {
        "epoch": run.inherited + epoch + 1,
        "step": run.step,
        "train_loss": (loss_sum[0] / loss_sum[1]).item(),
        **({"train_hint_loss": (loss_sum[2] / loss_sum[1]).item()} if run.hints is not None else {}),
        **({"train_teacher_loss": (loss_sum[3] / loss_sum[1]).item()} if teacher else {}),
        **(validation_scores(per_source) if per_source else {}),
        "lr": lr,
        "train_images_per_s": images / train_seconds,
    }


def validation_scores(per_source: dict) -> dict:
    """An epoch's val scores from train.evaluate's result per folder: all folders together, and each."""
    overall = combine(list(per_source.values()), CLASS_NAMES)
    return {
        "val_loss": overall["loss"],
        "val_miou": overall["miou"],
        "val_pixel_acc": overall["pixel_acc"],
        "val_per_class_iou": overall["per_class_iou"],
        "val_miou_per_source": {name: r["miou"] for name, r in per_source.items()},
        # Sources with partial labels (feral-cats): IoU counting predictions outside the admissible set.
        "val_iou_with_partial_per_source": {
            name: r["per_class_iou_with_partial"] for name, r in per_source.items() if r["partial_pixels"]
        },
    }


def checkpoint_metadata(run: Run, cfg: TrainConfig, world: int, device: torch.device) -> dict:
    """What ``OUT/last`` records beside the weights: the model, the history with the recipe, data and code. A hint
    stage's history and recipe form its ``distillation`` record, with the teacher, and it has no history of its
    own: ``--init`` from it starts a fresh one."""
    recipe = {**asdict(cfg), "world_size": world, "device": device.type}
    if cfg.hint_stage:
        trained: dict = {"distillation": {"teacher": run.hints.record, "recipe": recipe, "history": run.history}}
    else:
        trained = {"history": run.history, "inherited_epochs": run.inherited, "recipe": recipe}
    return {
        **model_metadata(cfg),
        **trained,
        "data": data_summary(cfg.data, teacher=cfg.teacher_weight > 0),
        "code_version": code_version(),
        **({"teacher": run.hints.record} if run.hints is not None and not cfg.hint_stage else {}),
    }


def save_epoch(run: Run, cfg: TrainConfig, epoch: int, world: int, device: torch.device) -> None:
    """``OUT/last`` (+ optimizer state, + projections with hints), and when validated: ``OUT/best`` when val mIoU is
    the run's best so far, and curves.png."""
    out = Path(cfg.out)
    metadata = checkpoint_metadata(run, cfg, world, device)
    save_training_state(out / "last-optimizer", run.optimizer, epoch + 1, run.step)
    if run.hints is not None:
        save_tensors(out / "last-projections.safetensors", run.hints.project.state_dict())
    save_checkpoint(out / "last", run.model, metadata)
    if "val_miou" not in run.history[-1]:
        return
    if run.history[-1]["val_miou"] >= max(h["val_miou"] for h in run.history[run.inherited :]):
        save_checkpoint(out / "best", run.model, metadata)
    save_curves(run.history, out / "curves.png")


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; return the final epoch's record."""
    rank, world, device = setup_distributed()
    run = start_or_resume(cfg, device, world)
    train_set = training_set(cfg)
    labelled = [folder for folder in cfg.data if is_labelled(folder) and not cfg.hint_stage]
    val_sets = {Path(folder).name: SegmentationFolder(folder, "val") for folder in labelled}
    batches_per_epoch = len(train_set) // (cfg.batch_size * world)
    if batches_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images are fewer than one batch of {cfg.batch_size} per process")
    total = batches_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lambda s: lr_factor(s, total, cfg), last_epoch=run.step - 1
    )
    weights = class_weights(cfg.data, cfg.class_weight_power)
    weights = None if weights is None else weights.to(device)
    record: dict = run.history[-1] if run.history else {}
    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, cfg.stop_after)
    for epoch in range(run.start_epoch, end_epoch):
        started = time.perf_counter()
        loader = epoch_loader(train_set, cfg, epoch, rank, world)
        loss_sum = train_one_epoch(
            run, loader, scheduler, weights, cfg, device, f"epoch {epoch + 1}/{cfg.epochs}", show=rank == 0
        )
        if world > 1:
            dist.all_reduce(loss_sum)
            for buffer in run.model.buffers():  # BatchNorm statistics differ per rank: evaluate and save rank 0's
                dist.broadcast(buffer, 0)
        train_seconds = time.perf_counter() - started
        segmenter = Segmenter(run.model, CLASS_NAMES, PALETTE, max_side=None)  # val images at their own size
        per_source = {name: evaluate(segmenter, data) for name, data in val_sets.items()}
        images = batches_per_epoch * cfg.batch_size * world
        lr = scheduler.get_last_lr()[0]
        record = epoch_record(run, epoch, loss_sum, lr, images, train_seconds, per_source, cfg.teacher_weight > 0)
        record["epoch_seconds"] = time.perf_counter() - started  # training and validation
        run.history.append(record)
        if rank == 0:
            print(json.dumps(record), flush=True)
            save_epoch(run, cfg, epoch, world, device)
    if world > 1:
        dist.destroy_process_group()
    return record


def parse_args(argv: Sequence[str] | None) -> TrainConfig:
    """The command line: ``--recipe`` picks a named recipe's defaults, and every other flag overrides them."""
    parser = argparse.ArgumentParser(prog="python -m train.train", description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="paper", help="defaults to start from (RECIPES)")
    add_flags(parser, TrainConfig)
    add_variant_flags(parser)
    args = given_flags(parser, argv)
    return from_recipe(args.pop("recipe"), **args | given_variants(args))


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    keep_freed_memory()  # faster steps, no change in results (segformer/allocator.py)
    try:
        train(cfg)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
