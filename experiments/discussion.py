"""Measurements and tables of docs/DISCUSSION.md (the paper's eight design questions).

    python -m experiments.discussion measure [--only NAME ...]  # evaluations of the shipped and ablation models
    python -m experiments.discussion report                     # tables into DISCUSSION.md, its figures redrawn

``measure`` writes small JSON files to docs/discussion/results/ (MEASUREMENTS and RUN_MEASUREMENTS name them; only
the latter read the ablation runs in ``--runs``); the training arms' results come from ``python -m experiments.ablate
run``, and the attention cost from ``python -m bench.bench_model --sr-sweep``. ``report`` reads only those JSON
files (the shipped checkpoint's history too) and, for the decoders' MACs, the model definition on the meta device (no
weights, no arithmetic), so the tables and figures can be redrawn without a model. docs/discussion/run.sh runs
everything in order.

Every evaluation here is on the val splits of the prepared 4-class data (``data/4class-256``: SIFT Flow, MSRC-v2
and CamVid at a 256-pixel short side, the scale the models were trained at), pooled into one confusion matrix.
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.interleave import interleaved
from experiments import robustness_figure
from experiments.ablate import ARMS_BY_NAME, SHIPPED, arm_results
from experiments.position_probe import probe
from experiments.tables import markdown_table, paired_differences, paired_verdict, spread, verdict
from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, load_checkpoint
from segformer.checkpoint import atomic_write, read_metadata, save_json
from segformer.config import FFN_PADDINGS, given_variants, preset
from segformer.model import swap_ffn_padding
from segformer.predict import class_argmax, normalise, upsample_logits
from task.classes import CLASS_NAMES, IGNORE_INDEX
from task.metrics import confusion_matrix, scores
from train.data import SegmentationFolder
from train.losses import partial_cross_entropy
from train.lovasz import lovasz_softmax
from train.paths import DISCUSSION_DIR, REPO, RUNS_DIR, repo_relative
from train.progress import progress
from train.train import parse_args

VAL = "data/4class-256"  # relative to the repository, as the results record it (SHIPPED likewise)
FIGURES = DISCUSSION_DIR
RESULTS = FIGURES / "results"
DOC = REPO / "docs" / "DISCUSSION.md"
NUM_CLASSES = len(CLASS_NAMES)

PADDING_SCALES = (0.5, 1.0, 1.5)  # input scales of the padding comparison (Q4)
TTA_SCALES = (0.75, 1.0, 1.25)  # multi-scale evaluation (Q8), each also flipped
ERF_IMAGES = 24  # validation images (256x256 centre crops) per effective-receptive-field map (Q6)
ERF_SIZE = 256
ERF_FIGURE_ROWS = ("attention-init-s0", "paper-s0", "shipped", "dwconv-init-s0", "dwconv-mixer-s0")
INIT_SEEDS = (0, 1, 2)  # random initialisations measured for the ERF at initialisation (Q6)
PROBE_IMAGES = 24  # crops the position read-out is fitted on, and as many others it is scored on (Q4)


def decoder_variants(arm_names: Sequence[str]) -> dict[str, tuple[str, dict]]:
    """Q7's decoders by the name the results use ("fpn (C=96)"): each arm's name and its config changes of B0, read
    from the arm's own flags."""
    variants = {}
    for name in arm_names:
        variant = given_variants(vars(parse_args(list(ARMS_BY_NAME[name].flags))))
        config = replace(preset("b0"), **variant)
        variants[f"{config.decoder} (C={config.decoder_dim})"] = name, variant
    return variants


DECODERS = decoder_variants(("frozen-all-mlp", "frozen-fpn"))  # the first is the reference
COST_SIZE = 512  # input side of the decoders' latency and MACs (Q7)
#: (arm, reference, question) of every comparison the answers rest on, in the order of the protocol table.
PAIRS = (
    ("non-overlap", "paper", "Q1"),
    ("max-pool", "paper", "Q1"),
    ("ffn-0-act", "paper", "Q3"),
    ("ffn-2-act", "paper", "Q3"),
    ("lovasz", "paper", "Q5"),
    ("ce+lovasz", "paper", "Q5"),
    ("ce-weighted-0.5", "paper", "Q5"),
    ("ce-weighted-1", "paper", "Q5"),
    ("dwconv-mixer", "paper", "Q6"),
    ("crop-64", "paper", "Q8"),
    ("reference-init", "paper", "(model card)"),
    ("scratch-4-epochs", "paper", "Q8"),
    ("scratch-16-epochs", "paper", "Q8"),
    ("distilled", "scratch-4-epochs", "Q8"),
    ("distilled-long", "scratch-16-epochs", "Q8"),
    ("finetune-ce+lovasz", "finetune-ce", "Q5"),
    ("frozen-fpn", "frozen-all-mlp", "Q7"),
    ("distilled-frozen-fpn", "distilled-frozen-all-mlp", "Q7"),
)
#: The architecture comparisons again under the 16-epoch protocol (three seeds each), against scratch-16-epochs.
LONG_PAIRS = tuple(
    (f"{arm}-16", "scratch-16-epochs", question)
    for arm, question in (
        ("non-overlap", "Q1"),
        ("max-pool", "Q1"),
        ("full-attention", "Q2"),
        ("ffn-0-act", "Q3"),
        ("ffn-2-act", "Q3"),
        ("ffn-replicate", "Q4"),
        ("dwconv-mixer", "Q6"),
        ("dwconv-mixer-matched", "Q6"),
    )
)


# ------------------------------------------------------------------------------------------------ predictions
def probabilities(model: SegFormer, image: torch.Tensor, scale: float = 1.0, flip: bool = False) -> torch.Tensor:
    """Softmax (1, K, H, W) at the image's own size, the network seeing it scaled by ``scale`` (and mirrored)."""
    size = (image.shape[-2], image.shape[-1])
    x = normalise(image.as_subclass(torch.Tensor)[None], IMAGENET_MEAN, IMAGENET_STD)
    if scale != 1.0:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1)
    if flip:
        x = x.flip(-1)
    logits = model(x)
    if flip:
        logits = logits.flip(-1)
    return upsample_logits(logits.float(), size).softmax(1)


def border_band(height: int, width: int) -> torch.Tensor:
    """True within an eighth of the shorter side of any edge (at 256 pixels, 32: one stage-4 token)."""
    band = max(1, round(min(height, width) / 8))
    inside = torch.zeros(height, width, dtype=torch.bool)
    inside[band : height - band, band : width - band] = True
    return ~inside


def confusion(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return confusion_matrix(pred, mask, NUM_CLASSES, IGNORE_INDEX)


def miou(matrix: torch.Tensor) -> dict:
    """mIoU and per-class IoU of a confusion matrix, with the matrix itself (as a list) for later pooling."""
    result = scores(matrix, list(CLASS_NAMES))
    return {"miou": result["miou"], "per_class_iou": result["per_class_iou"], "confusion": matrix.tolist()}


# ----------------------------------------------------------------------------------------------- measurements
@torch.inference_mode()
def measure_padding() -> dict:
    """Q4: the shipped model with its Mix-FFN padding swapped (no retraining), near the border and inside, at
    several input scales."""
    model, _ = load_checkpoint(REPO / SHIPPED)
    model.eval()
    data = SegmentationFolder(REPO / VAL, "val")
    cases = []
    for padding in FFN_PADDINGS:
        swap_ffn_padding(model, padding)
        for scale in PADDING_SCALES:
            parts = {"border": torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)}
            parts["interior"] = parts["border"].clone()
            for index in progress(range(len(data)), f"padding {padding}, scale {scale}", unit="images"):
                image, mask = data[index]
                pred = class_argmax(probabilities(model, image, scale))[0]
                border = border_band(*mask.shape)
                parts["border"] += confusion(pred[border], mask[border])
                parts["interior"] += confusion(pred[~border], mask[~border])
            total = parts["border"] + parts["interior"]
            cases.append(
                {
                    "padding": padding,
                    "scale": scale,
                    "all": miou(total),
                    **{name: miou(matrix) for name, matrix in parts.items()},
                    "border_pixel_share": parts["border"].sum().item() / max(total.sum().item(), 1),
                }
            )
    return {"checkpoint": SHIPPED, "data": VAL, "scales": PADDING_SCALES, "cases": cases}


@torch.inference_mode()
def measure_tta() -> dict:
    """Q8: single-scale evaluation against flipping and multi-scale averaging of the softmax (mmseg's aug_test)."""
    model, _ = load_checkpoint(REPO / SHIPPED)
    model.eval()
    data = SegmentationFolder(REPO / VAL, "val")
    settings: dict[str, list[tuple[float, bool]]] = {
        "single scale": [(1.0, False)],
        "flip": [(1.0, False), (1.0, True)],
        "multi-scale": [(s, False) for s in TTA_SCALES],
        "multi-scale + flip": [(s, f) for s in TTA_SCALES for f in (False, True)],
    }
    matrices = {name: torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64) for name in settings}
    for index in progress(range(len(data)), "multi-scale evaluation", unit="images"):
        image, mask = data[index]
        probs = {(s, f): probabilities(model, image, s, f) for s in TTA_SCALES for f in (False, True)}
        for name, views in settings.items():
            pred = class_argmax(sum(probs[v] for v in views))[0]
            matrices[name] += confusion(pred, mask)
    return {
        "checkpoint": SHIPPED,
        "data": VAL,
        "settings": {name: {"views": len(views), **miou(matrices[name])} for name, views in settings.items()},
    }


def centre_crops(data: SegmentationFolder, count: int, skip: int = 0) -> list[torch.Tensor]:
    """``count`` uint8 ERF_SIZE x ERF_SIZE centre crops of val images in a fixed random order (after the first
    ``skip`` usable ones); images smaller than the crop (MSRC-v2's 213-pixel ones) are left out, not upscaled."""
    crops = []
    for index in torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist():
        image, _ = data[index]
        if min(image.shape[-2:]) < ERF_SIZE:
            continue
        if skip:
            skip -= 1
            continue
        top, left = (image.shape[-2] - ERF_SIZE) // 2, (image.shape[-1] - ERF_SIZE) // 2
        crops.append(image.as_subclass(torch.Tensor)[:, top : top + ERF_SIZE, left : left + ERF_SIZE])
        if len(crops) == count:
            break
    return crops


def erf_maps(model: SegFormer, crops: Sequence[torch.Tensor]) -> torch.Tensor:
    """Effective receptive fields (Luo et al. 2016): |d y / d input| summed over colour channels, for y the sum of
    the ReLU of each stage's centre token (as RepLKNet's ERF code, Ding et al. 2022: a plain channel sum of a
    LayerNorm output is constant), as (4, ERF_SIZE, ERF_SIZE) maps normalised to sum 1, averaged over ``crops``."""
    model.eval()
    maps = torch.zeros(4, ERF_SIZE, ERF_SIZE)
    for crop in crops:
        x = normalise(crop[None], IMAGENET_MEAN, IMAGENET_STD).requires_grad_(True)
        features, _ = model.encoder(x)
        for stage, feature in enumerate(features):
            centre = feature[0, :, feature.shape[-2] // 2, feature.shape[-1] // 2].relu().sum()
            (grad,) = torch.autograd.grad(centre, x, retain_graph=stage < 3)
            magnitude = grad[0].abs().sum(0)
            maps[stage] += magnitude / magnitude.sum().clamp(min=1e-12) / len(crops)
    return maps


def mass_radius(erf: torch.Tensor, share: float) -> int:
    """Half-side of the smallest centred square holding ``share`` of the map's mass, in input pixels."""
    size = erf.shape[-1]
    centre = size // 2
    for radius in range(size):
        window = erf[max(0, centre - radius) : centre + radius + 1, max(0, centre - radius) : centre + radius + 1]
        if window.sum() >= share * erf.sum():
            return radius
    return size


def compact_log_maps(maps: torch.Tensor) -> list[list[str]]:
    """The maps pooled to 32x32, as log10 of the share of the maximum (floored at 1e-4), one decimal, one string
    per row: small enough to commit, enough for the figure."""
    pooled = F.adaptive_avg_pool2d(maps[:, None], 32)[:, 0]
    logs = (pooled / pooled.amax((1, 2), keepdim=True)).clamp(min=1e-4).log10()
    return [[" ".join(f"{v:.1f}" for v in row) for row in stage.tolist()] for stage in logs]


def arm_runs(runs: Path, arms: Sequence[str], what: str) -> dict[str, Path]:
    """The last checkpoint of each arm's seeds (``Arm.seeds``) in ``runs``, by ``ARM-sSEED``; a missing one is said
    on stderr (for the measurement ``what``) and left out."""
    found = {}
    for arm in arms:
        for seed in ARMS_BY_NAME[arm].seeds:
            path = runs / f"{arm}-s{seed}" / "last"
            if path.with_suffix(".json").is_file():
                found[f"{arm}-s{seed}"] = path
            else:
                print(f"{what}: {path} is missing; run python -m experiments.ablate run first", file=sys.stderr)
    return found


def erf_record(maps: torch.Tensor, token_mixer: str, with_maps: bool) -> dict:
    """What the results keep of one model's ERF maps: its mixer, r50 and r90 per stage, and (``with_maps``, for
    the figures) the compact log maps."""
    return {
        "token_mixer": token_mixer,
        "r50": [mass_radius(m, 0.5) for m in maps],
        "r90": [mass_radius(m, 0.9) for m in maps],
        **({"log10_maps_32": compact_log_maps(maps)} if with_maps else {}),
    }


def checkpoint_erfs(sources: dict[str, Path]) -> dict:
    """The ERF record of each checkpoint in ``sources`` (by name), with its maps for ERF_FIGURE_ROWS, on
    ERF_IMAGES val crops."""
    crops = centre_crops(SegmentationFolder(REPO / VAL, "val"), ERF_IMAGES)
    models = {}
    for name, path in sources.items():
        model, _ = load_checkpoint(path)
        models[name] = erf_record(erf_maps(model, crops), model.config.token_mixer, name in ERF_FIGURE_ROWS)
    return {"data": VAL, "images": ERF_IMAGES, "crop": ERF_SIZE, "models": models}


def measure_erf(runs: Path) -> dict:
    """Q6: the effective receptive field per stage of the attention and the depthwise-convolution token mixers
    (the ablation runs, both seeds) and of the shipped model."""
    return checkpoint_erfs({"shipped": REPO / SHIPPED, **arm_runs(runs, ("paper", "dwconv-mixer"), "erf")})


def measure_erf_16(runs: Path) -> dict:
    """Q6: the same ERF of the two token mixers trained from scratch under the 16-epoch protocol (scratch-16-epochs
    and dwconv-mixer-16): the seeds of either found in ``runs``."""
    return checkpoint_erfs(arm_runs(runs, ("scratch-16-epochs", "dwconv-mixer-16"), "erf-16"))


def measure_erf_init() -> dict:
    """Q6: the ERF of the attention and the depthwise-convolution encoders at random initialisation (PyTorch's
    default, as the ablation arms start), INIT_SEEDS each, on the same crops as ``measure_erf``."""
    crops = centre_crops(SegmentationFolder(REPO / VAL, "val"), ERF_IMAGES)
    models = {}
    for mixer, name in (("attention", "attention-init"), ("dwconv", "dwconv-init")):
        for seed in INIT_SEEDS:
            torch.manual_seed(seed)
            maps = erf_maps(SegFormer(replace(preset("b0"), token_mixer=mixer), NUM_CLASSES), crops)
            models[f"{name}-s{seed}"] = erf_record(maps, mixer, seed == INIT_SEEDS[0])
    return {"data": VAL, "images": ERF_IMAGES, "crop": ERF_SIZE, "seeds": list(INIT_SEEDS), "models": models}


def position_r2(models: dict[str, SegFormer]) -> dict:
    """The position read-out (experiments.position_probe) of each model, fitted on PROBE_IMAGES val crops and
    scored on as many others: R^2 per stage, by name."""
    data = SegmentationFolder(REPO / VAL, "val")
    fit, test = centre_crops(data, PROBE_IMAGES), centre_crops(data, PROBE_IMAGES, skip=PROBE_IMAGES)
    r2 = {name: probe(model, fit, test) for name, model in models.items()}
    return {"data": VAL, "crop": ERF_SIZE, "fit_images": PROBE_IMAGES, "test_images": PROBE_IMAGES, "r2": r2}


def measure_position(runs: Path) -> dict:
    """Q4: how much absolute position each stage's features hold (experiments.position_probe, R^2 of a linear
    read-out of a token's coordinates): a random initialisation, the shipped model with its Mix-FFN zeros and with
    them swapped for replicate at test time, and Q4's padding fine-tunes (the ablation runs, both seeds)."""
    torch.manual_seed(0)
    models: dict[str, SegFormer] = {"random init (seed 0)": SegFormer(preset("b0"), NUM_CLASSES)}
    models["shipped (zeros)"] = load_checkpoint(REPO / SHIPPED)[0]
    models["shipped, replicate at test time"] = swap_ffn_padding(load_checkpoint(REPO / SHIPPED)[0], "replicate")
    for name, path in arm_runs(runs, ("padding-zeros", "padding-replicate"), "position").items():
        models[name] = load_checkpoint(path)[0]
    return position_r2(models)


def measure_position_16(runs: Path) -> dict:
    """Q4: the same read-out of encoders trained from scratch under the 16-epoch protocol, with Mix-FFN's zeros
    (scratch-16-epochs) and with replicate padding (ffn-replicate-16): the seeds of either found in ``runs``."""
    found = arm_runs(runs, ("scratch-16-epochs", "ffn-replicate-16"), "position-16")
    return position_r2({name: load_checkpoint(path)[0] for name, path in found.items()})


@torch.inference_mode()
def measure_decoders() -> dict:
    """Q7: parameters and latency (one thread, B0 features of a 512x512 input) of the two decoders."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(1, 3, COST_SIZE, COST_SIZE)
    models, features = {}, {}
    for name, (_, variant) in DECODERS.items():
        torch.manual_seed(0)
        models[name] = SegFormer(replace(preset("b0"), **variant), NUM_CLASSES).eval()
        features[name] = models[name].encoder(x)[0]
    # Taken in turn (bench.interleave), so that a change of the machine's load hits both decoders alike.
    decoder = interleaved({n: lambda m=m, f=features[n]: m.decoder(f) for n, m in models.items()}, runs=15, warmup=3)
    whole = interleaved({n: lambda m=m: m(x) for n, m in models.items()}, runs=7, warmup=2)
    result = {
        name: {
            "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
            "decoder_seconds_512": statistics.median(decoder[name]),
            "model_seconds_512": statistics.median(whole[name]),
        }
        for name, model in models.items()
    }
    torch.set_num_threads(threads)
    return {"threads": 1, "decoders": result}


def measure_argmax_gradient() -> dict:
    """Q5: what reaches the logits from each training signal, on val images through the shipped model."""
    model, _ = load_checkpoint(REPO / SHIPPED)
    model.eval()
    data = SegmentationFolder(REPO / VAL, "val")
    image, mask = data[0]
    with torch.no_grad():
        x = normalise(image.as_subclass(torch.Tensor)[None], IMAGENET_MEAN, IMAGENET_STD)
        logits = upsample_logits(model(x).float(), tuple(mask.shape))
    logits.requires_grad_(True)
    labelled = (mask != IGNORE_INDEX)[None, None].expand_as(logits)
    result: dict = {"image": data.stems[0], "logits": list(logits.shape)}
    for name, loss in {
        "cross-entropy": lambda z: partial_cross_entropy(z, mask[None]),
        "lovasz-softmax": lambda z: lovasz_softmax(z, mask[None]),
    }.items():
        (grad,) = torch.autograd.grad(loss(logits), logits)
        result[name] = {"nonzero_gradient_share": (grad[labelled] != 0).double().mean().item()}
    pred = class_argmax(logits)
    result["argmax"] = {"requires_grad": pred.requires_grad, "dtype": str(pred.dtype)}
    # mIoU is piecewise constant in the logits: changing one logit by eps moves it only where that flips the pixel's
    # argmax, i.e. where the top two logits are within eps, and then it jumps. Elsewhere its derivative is zero.
    top2 = logits.detach().topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1])[mask[None] != IGNORE_INDEX]
    result["argmax_margin"] = {
        "pixels": margin.numel(),
        "share_flippable_by_1e-3": (margin < 1e-3).double().mean().item(),
        "median_margin": margin.median().item(),
    }
    return result


def measure_history(checkpoint: str = SHIPPED) -> dict:
    """The per-epoch val loss and mIoU of a checkpoint's training history (Q5, Q8), kept as a result so that the
    tables stay those of the model that was measured when the shipped checkpoint changes."""
    keys = ("epoch", "val_loss", "val_miou")
    return {
        "checkpoint": checkpoint,
        "history": [{k: h[k] for k in keys} for h in read_metadata(REPO / checkpoint)["history"]],
    }


#: The measurements of the shipped model and of fresh initialisations, by the name of their result.
MEASUREMENTS: dict[str, Callable[[], dict]] = {
    "history": measure_history,
    "padding-border": measure_padding,
    "tta": measure_tta,
    "erf-init": measure_erf_init,
    "decoders": measure_decoders,
    "argmax-gradient": measure_argmax_gradient,
}
#: The measurements of the ablation runs, given the folder that holds them (``--runs``).
RUN_MEASUREMENTS: dict[str, Callable[[Path], dict]] = {
    "erf": measure_erf,
    "erf-16": measure_erf_16,
    "position": measure_position,
    "position-16": measure_position_16,
}


# ----------------------------------------------------------------------------------------------------- tables
def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_history() -> list[dict]:
    """The measured model's history (``measure_history``)."""
    data = load("history")
    if data is None:
        command = "python -m experiments.discussion measure --only history"
        raise FileNotFoundError(f"{RESULTS}/history.json is missing: {command}")
    return data["history"]


def final_mious(runs: Sequence[dict]) -> dict[int, float]:
    """The last epoch's val mIoU of each seed of an arm, by seed."""
    return {r["seed"]: r["history"][-1]["val_miou"] for r in runs}


def arms_table(names: Sequence[str], reference: str = "paper") -> str:
    """Final val mIoU per arm (mean and range over seeds), its same-seed differences from ``reference``, per-class
    IoU."""
    results = arm_results()
    ref = final_mious(results.get(reference, []))
    rows = []
    for name in names:
        runs = results.get(name, [])
        if not runs:
            rows.append([name, "not run yet", "", "", "", "", "", ""])
            continue
        finals = final_mious(runs)
        classes = [statistics.fmean(r["history"][-1]["val_per_class_iou"][c] or 0.0 for r in runs) for c in CLASS_NAMES]
        rows.append(
            [
                name,
                " ".join(runs[0]["flags"]) or "(the paper's)",
                f"{runs[0]['parameters'] / 1e6:.3f} M",
                spread(list(finals.values())),
                paired_verdict(paired_differences(finals, ref)) if name != reference else "",
                spread([r["history"][-1]["val_loss"] for r in runs]),
                " / ".join(f"{v:.2f}" for v in classes),
                len(runs),
            ]
        )
    header = [
        "arm",
        "flags",
        "params",
        "val mIoU",
        f"same-seed difference vs {reference} (seed by seed)",
        "val loss",
        "IoU bg / plant / p-a / vehicle",
        "seeds",
    ]
    return markdown_table(header, rows)


def pairs_table(pairs: Sequence[tuple[str, str, str]] = PAIRS) -> str:
    """Each (arm, reference, question): the difference of the mean mIoUs judged by the wider seed range (unpaired),
    the same-seed differences judged by their own spread (paired), and the arm's person/animal and vehicle IoU per
    seed, which say whether its protocol can see objects at all."""
    results = arm_results()
    rows = []
    for arm, reference, question in pairs:
        runs, ref = results.get(arm, []), final_mious(results.get(reference, []))
        if not runs or not ref:
            rows.append([arm, reference, question, "not run yet", "", "", ""])
            continue
        finals = final_mious(runs)
        per_seed = [r["history"][-1]["val_per_class_iou"] for r in sorted(runs, key=lambda r: r["seed"])]
        iou = {c: " / ".join(f"{classes[c] or 0.0:.2f}" for classes in per_seed) for c in CLASS_NAMES}
        rows.append(
            [
                arm,
                reference,
                question,
                verdict(list(finals.values()), list(ref.values())),
                paired_verdict(paired_differences(finals, ref)),
                iou["person/animal"],
                iou["vehicle"],
            ]
        )
    header = "arm|vs|question|unpaired: mean difference (wider seed range)|paired: same-seed differences (seed by seed)"
    return markdown_table([*header.split("|"), "arm's person/animal IoU", "vehicle IoU"], rows)


def table_padding() -> str:
    data = load("padding-border")
    if data is None:
        return "(not measured yet: python -m experiments.discussion measure --only padding-border)"
    cases = {(c["padding"], c["scale"]): c for c in data["cases"]}
    rows = []
    for (padding, scale), case in sorted(cases.items(), key=lambda kv: (kv[0][1], FFN_PADDINGS.index(kv[0][0]))):
        zeros = cases[("zeros", scale)]
        rows.append(
            [
                padding,
                f"{scale:g}x",
                f"{case['all']['miou']:.3f}",
                f"{case['border']['miou']:.3f}",
                f"{case['interior']['miou']:.3f}",
                "" if padding == "zeros" else f"{case['border']['miou'] - zeros['border']['miou']:+.3f}",
                "" if padding == "zeros" else f"{case['interior']['miou'] - zeros['interior']['miou']:+.3f}",
            ]
        )
    header = "padding at test time|input scale|mIoU|border band|interior|border vs zeros|interior vs zeros".split("|")
    return markdown_table(header, rows)


def table_attention_cost() -> str:
    data = load("attention-cost")
    if data is None:
        out = f"{repo_relative(RESULTS)}/attention-cost.json"
        return f"(not measured yet: python -m bench.bench_model --sr-sweep --json-out {out})"

    def memory(path: dict) -> str:
        if path["status"] != "ok":
            return path.get("note", path["status"])
        return f"{path['peak_memory_mib']:.0f} MiB ({path['peak_memory_ratio']:.1f}x)"

    rows = []
    for case in data["cases"]:
        forward = case["forward"]
        latency = f"{forward['latency_s']:.3g} s ({forward['latency_ratio']:.2f}x)" if "latency_s" in forward else ""
        size = "x".join(map(str, case["size"]))
        stage1 = f"{case['stage1_attention_mib']:g} MiB"
        rows.append([" ".join(map(str, case["sr_ratios"])), size, stage1, latency, memory(forward)])
        rows[-1].append(memory(case["attention_maps"]))
    header = "sr_ratios|input|stage-1 attention matrix|latency (vs 8 4 2 1)|peak memory|peak, returning maps".split("|")
    return markdown_table(header, rows)


def table_loss_history() -> str:
    history = shipped_history()
    loss = [h["val_loss"] for h in history]
    score = [h["val_miou"] for h in history]
    moves = list(zip(loss[:-1], loss[1:], score[:-1], score[1:], strict=True))
    agree = sum((l1 < l0) == (s1 > s0) for l0, l1, s0, s1 in moves)
    rows = [
        ["epochs", len(history)],
        ["Spearman correlation of val loss and val mIoU", f"{spearman(loss, score):.3f}"],
        [
            "epoch-to-epoch moves in which loss fell and mIoU rose, or loss rose and mIoU fell",
            f"{agree} of {len(moves)}",
        ],
        [
            "epoch of the lowest val loss / of the highest val mIoU",
            f"{loss.index(min(loss)) + 1} / {score.index(max(score)) + 1}",
        ],
    ]
    gradient = load("argmax-gradient")
    if gradient is not None:
        margin = gradient["argmax_margin"]
        rows += [
            [
                "share of labelled logits with a nonzero gradient: cross-entropy",
                f"{gradient['cross-entropy']['nonzero_gradient_share']:.3f}",
            ],
            ["the same: Lovasz-softmax", f"{gradient['lovasz-softmax']['nonzero_gradient_share']:.3f}"],
            ["argmax output requires grad", gradient["argmax"]["requires_grad"]],
            [
                "share of pixels whose argmax a 1e-3 change of one logit can flip (elsewhere d mIoU / d logit = 0)",
                f"{margin['share_flippable_by_1e-3']:.1e} (median top-2 margin {margin['median_margin']:.2f})",
            ],
        ]
    return markdown_table(["shipped model", "value"], rows)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    def ranks(values: Sequence[float]) -> list[int]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0] * len(values)
        for rank, index in enumerate(order):
            result[index] = rank
        return result

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def erf_row(label: str, group: Sequence[dict]) -> list[str]:
    """A row of the ERF table: ``label`` and the mean r50 / r90 per stage over ``group``'s models."""
    r50 = [statistics.fmean(m["r50"][s] for m in group) for s in range(4)]
    r90 = [statistics.fmean(m["r90"][s] for m in group) for s in range(4)]
    return [label, *(f"{a:.0f} / {b:.0f}" for a, b in zip(r50, r90, strict=True))]


def table_erf() -> str:
    data, init, long = load("erf"), load("erf-init"), load("erf-16")
    if data is None:
        return "(not measured yet: python -m experiments.discussion measure --only erf)"
    rows = []
    for mixer in ("attention", "dwconv"):
        if init is not None:
            group = [m for m in init["models"].values() if m["token_mixer"] == mixer]
            rows.append(erf_row(f"{mixer}, random init ({len(group)} seeds)", group))
        group = [m for n, m in data["models"].items() if m["token_mixer"] == mixer and n != "shipped"]
        if group:
            rows.append(erf_row(f"{mixer}, 2 epochs ({len(group)} seeds, ablation protocol)", group))
        group = [m for m in (long["models"].values() if long else ()) if m["token_mixer"] == mixer]
        if group:
            seeds = f"{len(group)} seed{'s' if len(group) > 1 else ''}"
            rows.append(erf_row(f"{mixer}, 16 epochs ({seeds}, 16-epoch protocol)", group))
    if "shipped" in data["models"]:
        rows.append(erf_row("attention, shipped model", [data["models"]["shipped"]]))
    header = ["token mixer", *(f"stage {s + 1}: r50 / r90 px" for s in range(4))]
    return markdown_table(header, rows)


def table_position(name: str = "position") -> str:
    data = load(name)
    if data is None:
        return f"(not measured yet: python -m experiments.discussion measure --only {name})"
    rows = [[model, *(f"{v:.2f}" for v in r2)] for model, r2 in data["r2"].items()]
    return markdown_table(["encoder", *(f"stage {s + 1} R^2" for s in range(4))], rows)


def macs(variant: dict, size: int = COST_SIZE) -> tuple[int, int]:
    """Multiply-accumulates of the convolutions and matrix products (``torch.utils.flop_counter``, FLOPs / 2) of
    B0 with ``variant`` on one size x size input: (decoder, whole model). Counted on the meta device, so no weights
    are made and nothing is computed; normalisations, activations and interpolations are not counted."""
    with torch.device("meta"):
        model = SegFormer(replace(preset("b0"), **variant), NUM_CLASSES).eval()
        x = torch.empty(1, 3, size, size)
    with torch.no_grad():
        features = model.encoder(x)[0]
        with FlopCounterMode(display=False) as decoder:
            model.decoder(features)
        with FlopCounterMode(display=False) as whole:
            model(x)
    return decoder.get_total_flops() // 2, whole.get_total_flops() // 2


def table_decoders() -> str:
    latency = load("decoders")
    results = arm_results()
    (reference_arm, _), *_ = DECODERS.values()
    reference = final_mious(results.get(reference_arm, []))
    rows = []
    for name, (arm, variant) in DECODERS.items():
        finals = final_mious(results.get(arm, []))
        cost = latency["decoders"][name] if latency else {}
        decoder_macs, model_macs = macs(variant)
        rows.append(
            [
                name,
                f"{cost['decoder_parameters'] / 1e3:.0f} k" if cost else "",
                f"{decoder_macs / 1e9:.2f} G",
                f"{cost['decoder_seconds_512'] * 1e3:.0f} ms" if cost else "",
                f"{model_macs / 1e9:.2f} G",
                f"{cost['model_seconds_512'] * 1e3:.0f} ms" if cost else "",
                spread(list(finals.values())) if finals else "not run yet",
                paired_verdict(paired_differences(finals, reference)) if arm != reference_arm else "",
            ]
        )
    header = [
        "decoder",
        "decoder params",
        f"decoder MACs {COST_SIZE}x{COST_SIZE}",
        "decoder latency",
        "whole-model MACs",
        "whole-model latency",
        "val mIoU (frozen encoder)",
        "same-seed difference vs all_mlp (seed by seed)",
    ]
    return markdown_table(header, rows)


def table_tta() -> str:
    data = load("tta")
    if data is None:
        return "(not measured yet: python -m experiments.discussion measure --only tta)"
    single = data["settings"]["single scale"]["miou"]
    rows = [
        [
            name,
            s["views"],
            f"{s['miou']:.3f}",
            f"{s['miou'] - single:+.3f}",
            " / ".join(f"{v:.3f}" for v in s["per_class_iou"].values()),
        ]
        for name, s in data["settings"].items()
    ]
    return markdown_table(
        ["evaluation", "forward passes", "val mIoU", "vs single scale", "IoU bg / plant / p-a / vehicle"], rows
    )


TABLES: dict[str, Callable[[], str]] = {
    **{
        f"robustness-{key}": lambda metric=metric: robustness_figure.table(robustness_figure.load(), metric)
        for key, metric in zip(("miou", "people", "pets"), robustness_figure.METRICS, strict=True)
    },
    "protocol": pairs_table,
    "protocol-16": lambda: pairs_table(LONG_PAIRS),
    "q1": lambda: arms_table(["paper", "non-overlap", "max-pool"]),
    "q1-16": lambda: arms_table(["scratch-16-epochs", "non-overlap-16", "max-pool-16"], reference="scratch-16-epochs"),
    "q2": table_attention_cost,
    "q3": lambda: arms_table(["paper", "ffn-0-act", "ffn-2-act"]),
    "q3-16": lambda: arms_table(["scratch-16-epochs", "ffn-0-act-16", "ffn-2-act-16"], reference="scratch-16-epochs"),
    "q4": table_padding,
    "q4-position": table_position,
    "q4-position-16": lambda: table_position("position-16"),
    "q4-arms": lambda: arms_table(["padding-zeros", "padding-replicate"], reference="padding-zeros"),
    "q4-16": lambda: arms_table(["scratch-16-epochs", "ffn-replicate-16"], reference="scratch-16-epochs"),
    "q5-arms": lambda: arms_table(["paper", "lovasz", "ce+lovasz", "ce-weighted-0.5", "ce-weighted-1"]),
    "q5-finetune": lambda: arms_table(["finetune-ce", "finetune-ce+lovasz"], reference="finetune-ce"),
    "q5-history": table_loss_history,
    "q6-arms": lambda: arms_table(["paper", "dwconv-mixer"]),
    "q6-16": lambda: arms_table(
        ["scratch-16-epochs", "dwconv-mixer-16", "dwconv-mixer-matched-16"], reference="scratch-16-epochs"
    ),
    "q6-erf": table_erf,
    "q7": table_decoders,
    "q7-distilled": lambda: arms_table(
        ["distilled-frozen-all-mlp", "distilled-frozen-fpn"], reference="distilled-frozen-all-mlp"
    ),
    "q8-tta": table_tta,
    "q8-schedule": lambda: arms_table(["paper", "scratch-4-epochs", "scratch-16-epochs"]),
    "q8-distill": lambda: pairs_table([p for p in PAIRS if p[0].startswith("distilled")]),
    "q8-crop": lambda: arms_table(["paper", "crop-64"]),
}


# ---------------------------------------------------------------------------------------------------- figures
def figure_history(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = shipped_history()
    epochs = [h["epoch"] for h in history]
    fig, loss_axis = plt.subplots(figsize=(7, 3.2), dpi=110)
    loss_axis.plot(epochs, [h["val_loss"] for h in history], color="tab:red", label="val cross-entropy")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("val cross-entropy", color="tab:red")
    miou_axis = loss_axis.twinx()
    miou_axis.plot(epochs, [h["val_miou"] for h in history], color="tab:blue", label="val mIoU")
    miou_axis.set_ylabel("val mIoU", color="tab:blue")
    loss_axis.set_title("Shipped model: validation loss and mIoU per epoch")
    fig.tight_layout()
    save_figure(fig, path)


def erf_figure_maps() -> dict[str, list[list[list[float]]]]:
    """The ERF maps drawn (ERF_FIGURE_ROWS that were measured), each 4 stages of 32x32 log10 shares of the maximum."""
    models = {**(load("erf") or {"models": {}})["models"], **(load("erf-init") or {"models": {}})["models"]}
    return {
        name: [[[float(v) for v in row.split()] for row in stage] for stage in models[name]["log10_maps_32"]]
        for name in ERF_FIGURE_ROWS
        if name in models
    }


def draw_erf(path: Path, linear: bool) -> None:
    """The ERF maps, one row per model and a column per stage, on a log10 scale (floor 1e-4) or a linear one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = erf_figure_maps()
    if not maps:
        return
    fig, axes = plt.subplots(len(maps), 4, figsize=(8, 2.1 * len(maps)), dpi=100, squeeze=False)
    for row, (name, stages) in zip(axes, maps.items(), strict=True):
        for stage, axis in enumerate(row):
            values = torch.tensor(stages[stage])
            axis.imshow(
                10**values if linear else values, cmap="magma", vmin=0 if linear else -4, vmax=1 if linear else 0
            )
            axis.set_xticks([])
            axis.set_yticks([])
            if stage == 0:
                axis.set_ylabel(name, fontsize=8)
            axis.set_title(f"stage {stage + 1}", fontsize=8)
    scale = "share of the maximum" if linear else "log10 of the share of the maximum"
    fig.suptitle(f"Effective receptive field of the centre token ({scale}, 256x256 input)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def figure_erf(path: Path) -> None:
    draw_erf(path, linear=False)


def figure_erf_linear(path: Path) -> None:
    draw_erf(path, linear=True)


def save_figure(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]


FIGURES_MADE: dict[str, Callable[[Path], None]] = {
    "robustness.png": robustness_figure.draw,
    "q5-history.png": figure_history,
    "q6-erf.png": figure_erf,
    "q6-erf-linear.png": figure_erf_linear,
}


def fill_tables(text: str) -> str:
    """Replace the body of every ``<!-- table:NAME -->`` ... ``<!-- /table -->`` block with TABLES[NAME]()."""
    out, rest = [], text
    while (start := rest.find("<!-- table:")) >= 0:
        head_end = rest.index("-->", start) + 3
        name = rest[start + len("<!-- table:") : head_end - 3].strip()
        end = rest.index("<!-- /table -->", head_end)
        if name not in TABLES:
            raise ValueError(f"{DOC}: unknown table {name!r}; known: {', '.join(TABLES)}")
        out += [rest[:head_end], "\n", TABLES[name](), "\n"]
        rest = rest[end:]
    return "".join(out) + rest


def report() -> None:
    for name, draw in FIGURES_MADE.items():
        draw(FIGURES / name)
    text = fill_tables(DOC.read_text())
    atomic_write(DOC, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {DOC} and {', '.join(FIGURES_MADE)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.discussion", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("measure", "report"))
    parser.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS | RUN_MEASUREMENTS), help="measure only these")
    parser.add_argument(
        "--runs",
        type=Path,
        default=RUNS_DIR / "ablate",
        help=f"the ablation runs that {', '.join(RUN_MEASUREMENTS)} measure (no other measurement reads them)",
    )
    args = parser.parse_args(argv)
    if args.action == "report":
        report()
        return
    if not (REPO / VAL).is_dir():
        sys.exit(f"error: {VAL} is missing; prepare it first (train/recipes/b0-4class.sh, stage 0)")
    for name in args.only or [*MEASUREMENTS, *RUN_MEASUREMENTS]:
        started = time.perf_counter()
        result = MEASUREMENTS[name]() if name in MEASUREMENTS else RUN_MEASUREMENTS[name](args.runs)
        save_json(RESULTS / f"{name}.json", result)
        print(f"{name}: {time.perf_counter() - started:.0f} s -> {RESULTS / name}.json", flush=True)


if __name__ == "__main__":
    main()
