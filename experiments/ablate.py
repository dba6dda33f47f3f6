"""The training arms behind docs/DISCUSSION.md and the model card's levers: each variant trained under one
protocol, with two seeds (three for the 16-epoch architecture arms, Arm.seeds).

    python -m experiments.ablate run [--arms NAME ...] [--jobs 2] [--runs runs/ablate]
    python -m experiments.ablate list
    python -m experiments.ablate report                                   (the levers table of MODEL_CARD.md)

Four protocols (PROTOCOLS):
- ``scratch``: B0 from random weights with the ``scratch`` recipe, 2 epochs (16 for the arms named ``*-16``) of
  the three sources' train splits, 128-pixel crops drawn around the prepared 256-pixel short side (``--base-size
  256``), so the image scale is the shipped model's and only the context per crop is smaller. Scored on the full
  val splits.
- ``finetune``: the shipped checkpoint, trained 1 more epoch (192-pixel crops at the 256-pixel scale) at a low rate
  (5e-5), for variants that keep its weights (the loss, Q5).
- ``frozen``: the shipped checkpoint's encoder (or a distilled one, below), fixed, under a freshly initialised
  decoder trained for 1 epoch of 256-pixel crops (Q7 compares decoders on the same features).
- ``teacher``: the shipped checkpoint, 1 more epoch of the three sources, feral-cats and DAVIS (256-pixel crops,
  lr 2e-4, bfloat16 autocast) with or without the segmentation teachers' targets (train.teach), for the model
  card's teacher levers.

An arm with ``distill`` flags first distils EfficientNet-Lite0 into a fresh encoder (``python -m train.distill``,
those flags) and then trains from it under its protocol (``--init``), so that distillation is compared with
training from random weights for as many more epochs as it cost. Arms that name the same ``encoder`` share one
distillation per seed: the first to run makes it, the others wait for it and start from it.

Every arm runs as ``python -m train.train`` with one torch thread, is resumable (a rerun continues or skips it), and
leaves a small JSON of its history in ``docs/discussion/results/arms/`` for ``experiments.discussion`` to tabulate. The
summary also holds the arm's last checkpoint scored on the prepared val splits of the three sources and of
feral-cats (``scores``: the model card's three figures, mIoU and person/animal IoU of the three sources pooled,
and the cat IoU on feral-cats), and its compute (``seconds``: distillation and training).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from experiments.tables import markdown_table, spread, verdict
from segformer import load_checkpoint
from segformer.checkpoint import DEFAULT_CHECKPOINT, save_json
from segformer.model import SegFormer
from segformer.segmenter import Segmenter
from task.classes import CLASS_NAMES, PALETTE
from train.data import SegmentationFolder
from train.evaluate import evaluate
from train.paths import ARMS_DIR, REPO, RUNS_DIR, repo_relative

# Paths of the arms' flags are relative to the repository, where every arm runs, and are recorded as written.
SHIPPED = repo_relative(DEFAULT_CHECKPOINT)  # checkpoints/segformer-b0-4class
RESULTS = ARMS_DIR
SEEDS = (0, 1)
LONG_SEEDS = (0, 1, 2)  # the 16-epoch architecture arms and their reference
THREE_SOURCES = "data/4class-256"  # SIFT Flow, MSRC-v2 and CamVid, prepared at short side 256
FERAL_CATS = "data/feral-cats-256"
DAVIS = "data/davis-256"
EVERYDAY = "data/everyday-256"  # unlabelled: only teacher targets teach from it
WITH_CATS = ("--data", THREE_SOURCES, FERAL_CATS)

PROTOCOLS: dict[str, list[str]] = {
    "scratch": [
        "--recipe", "scratch", "--data", "data/4class-256", "--epochs", "2",
        "--crop-size", "128", "--base-size", "256", "--batch-size", "8",
    ],
    "finetune": [
        "--data", "data/4class-256", "--epochs", "1", "--crop-size", "192", "--base-size", "256", "--batch-size", "8",
        "--init", SHIPPED, "--lr", "5e-5", "--head-lr-mult", "1", "--warmup-iters", "20",
    ],
    "frozen": [
        "--data", "data/4class-256", "--epochs", "1", "--crop-size", "256", "--batch-size", "8",
        "--init", SHIPPED, "--init-encoder-only", "--freeze-encoder",
        "--lr", "6e-4", "--head-lr-mult", "1", "--warmup-iters", "40",
    ],
    "teacher": [
        "--data", THREE_SOURCES, FERAL_CATS, DAVIS, "--epochs", "1", "--crop-size", "256", "--batch-size", "8",
        "--init", SHIPPED, "--lr", "2e-4", "--head-lr-mult", "1", "--warmup-iters", "50", "--cpu-bf16",
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    name: str
    question: str  # the DISCUSSION.md question it answers
    protocol: str
    flags: tuple[str, ...] = ()
    distill: tuple[str, ...] = ()  # train.distill flags of a distillation to start from (none: no distillation)
    seeds: tuple[int, ...] = SEEDS
    encoder: str = ""  # the name of a distillation shared with other arms (default: the arm's own)

    def distill_dir(self, seed: int, runs: Path) -> Path:
        """The run folder of this arm's distillation for ``seed``."""
        return runs / f"{self.encoder or self.name}-s{seed}-distill"


#: Four epochs of EfficientNet-Lite0 hints on the three sources' images: the encoder of distilled-long (Q8) and of
#: Q7's decoders on an encoder that never saw a decoder.
LONG_DISTILL = ("--data", THREE_SOURCES, "--epochs", "4", "--crop-size", "128", "--batch-size", "16")
FPN = ("--decoder", "fpn", "--decoder-dim", "96")  # at C = 96 its parameters match the all-MLP decoder's at 256


#: In the order they run: both seeds of an arm before the next arm.
ARMS = (
    Arm("paper", "Q1-Q6 (reference)", "scratch"),
    Arm("non-overlap", "Q1", "scratch", ("--patch-merging", "non_overlap")),
    Arm("max-pool", "Q1", "scratch", ("--patch-merging", "max_pool")),
    Arm("dwconv-mixer", "Q6", "scratch", ("--token-mixer", "dwconv")),
    Arm("lovasz", "Q5", "scratch", ("--loss", "lovasz")),
    Arm("ce+lovasz", "Q5", "scratch", ("--loss", "ce+lovasz")),
    # Q5: how much of ce+lovasz is class rebalancing (the Lovasz term weighs every class alike)? Cross-entropy with
    # class weights frequency ** -P: P = 1 weighs every class alike too, 0.5 halfway.
    Arm("ce-weighted-0.5", "Q5", "scratch", ("--class-weight-power", "0.5")),
    Arm("ce-weighted-1", "Q5", "scratch", ("--class-weight-power", "1")),
    Arm("ffn-0-act", "Q3", "scratch", ("--ffn-activations", "0")),
    Arm("ffn-2-act", "Q3", "scratch", ("--ffn-activations", "2")),
    Arm("frozen-all-mlp", "Q7", "frozen"),
    Arm("frozen-fpn", "Q7", "frozen", FPN),
    Arm("crop-64", "Q8", "scratch", ("--crop-size", "64")),
    Arm("finetune-ce", "Q5 (reference)", "finetune"),
    Arm("finetune-ce+lovasz", "Q5", "finetune", ("--loss", "ce+lovasz")),
    Arm("reference-init", "levers: reference initialisation", "scratch", ("--weight-init", "reference")),
    Arm("full-attention", "Q2", "scratch", ("--sr-ratios", "1", "1", "1", "1")),
    # The model card's levers (everyday photos): distillation against as many more epochs from random weights...
    Arm("scratch-4-epochs", "levers: distillation (reference)", "scratch", ("--epochs", "4")),
    Arm(
        "distilled",
        "levers: distillation",
        "scratch",
        distill=("--data", THREE_SOURCES, "--epochs", "2", "--crop-size", "128", "--batch-size", "16"),
    ),
    # ... and the same comparison over a longer schedule: 4 epochs of distillation cost about as long as 3 of training.
    Arm("scratch-16-epochs", "levers: distillation, longer (reference)", "scratch", ("--epochs", "16"),
        seeds=LONG_SEEDS),
    Arm("distilled-long", "levers: distillation, longer", "scratch", ("--epochs", "13"), distill=LONG_DISTILL),
    # ... and the additions to the shipped model's recipe, one epoch from its weights.
    Arm("finetune-cats", "levers: feral-cats with partial labels", "finetune", WITH_CATS),
    Arm("finetune-copy-paste", "levers: Simple Copy-Paste", "finetune", ("--copy-paste", "0.3")),
    Arm("finetune-cats-copy-paste", "levers: both (stage 9)", "finetune", (*WITH_CATS, "--copy-paste", "0.3")),
    Arm(
        "finetune-cats-copy-paste-hints",
        "levers: distillation beside the labels",
        "finetune",
        (*WITH_CATS, "--copy-paste", "0.3", "--distill-weight", "1"),
    ),
    # The segmentation teachers (train.teach): labels alone against labels + the fused teachers' targets, the
    # fusion rule (ADE20K alone), and the unlabelled everyday photos added (1.23x the images of an epoch).
    Arm("teacher-none", "levers: teacher targets (reference)", "teacher"),
    Arm("teacher-fused", "levers: teacher targets", "teacher", ("--teacher-weight", "1", "--teacher", "max-person")),
    Arm("teacher-fused-everyday", "levers: teacher targets + everyday photos", "teacher",
        ("--data", THREE_SOURCES, FERAL_CATS, DAVIS, EVERYDAY, "--teacher-weight", "1", "--teacher", "max-person")),
    Arm("teacher-ade20k", "levers: teacher fusion (ADE20K alone)", "teacher",
        ("--teacher-weight", "1", "--teacher", "ade20k")),
    # The architecture questions again under a protocol that can tell designs apart: 16 epochs from random weights
    # (the scratch protocol, 8x as long), where person/animal and vehicle are well above 0; scratch-16-epochs is
    # their reference. Three seeds each, compared seed by seed.
    Arm("non-overlap-16", "Q1", "scratch", ("--epochs", "16", "--patch-merging", "non_overlap"), seeds=LONG_SEEDS),
    Arm("max-pool-16", "Q1", "scratch", ("--epochs", "16", "--patch-merging", "max_pool"), seeds=LONG_SEEDS),
    Arm("full-attention-16", "Q2", "scratch", ("--epochs", "16", "--sr-ratios", "1", "1", "1", "1"), seeds=LONG_SEEDS),
    Arm("ffn-0-act-16", "Q3", "scratch", ("--epochs", "16", "--ffn-activations", "0"), seeds=LONG_SEEDS),
    Arm("ffn-2-act-16", "Q3", "scratch", ("--epochs", "16", "--ffn-activations", "2"), seeds=LONG_SEEDS),
    Arm("ffn-replicate-16", "Q4", "scratch", ("--epochs", "16", "--ffn-padding", "replicate"), seeds=LONG_SEEDS),
    Arm("dwconv-mixer-16", "Q6", "scratch", ("--epochs", "16", "--token-mixer", "dwconv"), seeds=LONG_SEEDS),
    # ... and at the paper's size: Mix-FFN 6.5x wide instead of 4x gives back the attention's parameters but 0.2%.
    Arm("dwconv-mixer-matched-16", "Q6", "scratch", ("--epochs", "16", "--token-mixer", "dwconv", "--mlp-ratio", "6.5"),
        seeds=LONG_SEEDS),
    # Q4 without the test-time shock: the shipped weights trained on (2 epochs) with Mix-FFN's padding replicate,
    # against the same fine-tune with its zeros; experiments.position_probe then reads position from both.
    Arm("padding-zeros", "Q4 (reference)", "finetune", ("--epochs", "2")),
    Arm("padding-replicate", "Q4", "finetune", ("--epochs", "2", "--ffn-padding", "replicate")),
    # Q7 on an encoder that saw neither decoder: distilled-long's distillation (labels unused), frozen, under each.
    Arm("distilled-frozen-all-mlp", "Q7 (reference)", "frozen", distill=LONG_DISTILL, encoder="distilled-long"),
    Arm("distilled-frozen-fpn", "Q7", "frozen", FPN, distill=LONG_DISTILL, encoder="distilled-long"),
)  # fmt: skip


ARMS_BY_NAME = {arm.name: arm for arm in ARMS}


def distill_command(arm: Arm, seed: int, runs: Path) -> list[str]:
    """The train.distill command line of an arm's distillation, to run in the repository."""
    out = arm.distill_dir(seed, runs)
    resume = ["--resume"] if (out / "last.json").is_file() else []
    flags = [*arm.distill, "--seed", str(seed), "--workers", "1", "--out", repo_relative(out)]
    return [sys.executable, "-m", "train.distill", *flags, *resume]


def command(arm: Arm, seed: int, runs: Path) -> list[str]:
    """The train.train command line of one arm and seed (from its distilled encoder, if it has one), to run in the
    repository."""
    out = runs / f"{arm.name}-s{seed}"
    resume = ["--resume"] if (out / "last.json").is_file() else []
    flags = [*PROTOCOLS[arm.protocol], *arm.flags]
    if arm.distill:  # the distilled encoder takes the place of the protocol's --init, if it has one
        init = flags.index("--init") if "--init" in flags else len(flags)
        flags[init : init + 2] = ["--init", repo_relative(arm.distill_dir(seed, runs) / "last")]
    flags += ["--seed", str(seed), "--workers", "1", "--out", repo_relative(out)]
    return [sys.executable, "-m", "train.train", *flags, *resume]


def distilled(arm: Arm, seed: int, runs: Path) -> dict | None:
    """The distillation record of an arm's finished distillation, else None."""
    meta_path = arm.distill_dir(seed, runs) / "last.json"
    if not meta_path.is_file():
        return None
    record = json.loads(meta_path.read_text())["distillation"]
    return record if len(record["history"]) >= record["recipe"]["epochs"] else None


def finished(arm: Arm, seed: int, runs: Path) -> dict | None:
    """The run's checkpoint metadata if it has trained its whole schedule, else None."""
    meta_path = runs / f"{arm.name}-s{seed}" / "last.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    done = len(meta["history"]) - meta.get("inherited_epochs", 0)
    return meta if done >= meta["recipe"]["epochs"] else None


def arm_scores(model: SegFormer) -> dict:
    """The model card's figures on the prepared val splits: the three sources pooled, and the cat IoU on feral-cats
    (person/animal IoU with "not a cat" pixels predicted person/animal counted as false positives)."""
    segmenter = Segmenter(model, CLASS_NAMES, PALETTE, max_side=None)  # val images at their own size
    three = evaluate(segmenter, SegmentationFolder(REPO / THREE_SOURCES, "val"))
    cats = evaluate(segmenter, SegmentationFolder(REPO / FERAL_CATS, "val"))
    return {
        "three_sources": {"miou": three["miou"], "per_class_iou": three["per_class_iou"]},
        "feral_cats": {
            "cat_iou": cats["per_class_iou_with_partial"]["person/animal"],
            "outside_admissible": cats["outside_admissible"],
        },
    }


def summary(arm: Arm, seed: int, runs: Path, meta: dict) -> dict:
    """The small result committed for one arm and seed: its settings, size, compute, per-epoch val scores and the
    model card's figures (``arm_scores``)."""
    model, _ = load_checkpoint(runs / f"{arm.name}-s{seed}" / "last")
    keys = ("epoch", "step", "train_loss", "val_loss", "val_miou", "val_per_class_iou", "val_pixel_acc")
    history = meta["history"][meta.get("inherited_epochs", 0) :]
    record = distilled(arm, seed, runs) if arm.distill else None
    return {
        "arm": arm.name,
        "question": arm.question,
        "protocol": arm.protocol,
        "flags": list(arm.flags),
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
        "train_images_per_s": meta["history"][-1]["train_images_per_s"],
        "history": [{k: h[k] for k in keys} for h in history],
        **({"distill_flags": list(arm.distill)} if arm.distill else {}),
        "seconds": {
            "distillation": sum(h["epoch_seconds"] for h in record["history"]) if record else 0.0,
            "training": sum(h["epoch_seconds"] for h in history),
        },
        "scores": arm_scores(model),
    }


_DISTILLING: dict[Path, threading.Lock] = {}  # one lock per distillation folder, shared by the arms that use it
_DISTILLING_GUARD = threading.Lock()


def _step(name: str, step: str, line: list[str], runs: Path) -> str | None:
    """Run one step of an arm (one torch thread), its output appended to the arm's log; an error line if it failed."""
    print(f"{name}: {step}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(runs / f"{name}.log", "a") as log:
        code = subprocess.run(line, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    return f"{name}: {step} failed (exit {code}); see {runs / name}.log" if code != 0 else None


def run_one(arm: Arm, seed: int, runs: Path) -> str:
    """Train (or continue) one arm and seed, then write its summary; returns a status line. A distillation that
    several arms share is made once: the others wait for it, even when they run in parallel."""
    name = f"{arm.name}-s{seed}"
    meta = finished(arm, seed, runs)
    if meta is None:
        runs.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if arm.distill:
            with _DISTILLING_GUARD:
                lock = _DISTILLING.setdefault(arm.distill_dir(seed, runs), threading.Lock())
            with lock:
                if distilled(arm, seed, runs) is None and (
                    error := _step(name, "distilling", distill_command(arm, seed, runs), runs)
                ):
                    return error
        if error := _step(name, "training", command(arm, seed, runs), runs):
            return error
        meta = finished(arm, seed, runs)
        if meta is None:
            return f"{name}: stopped before the end of its schedule"
        print(f"{name}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    result = summary(arm, seed, runs, meta)
    save_json(RESULTS / f"{name}.json", result)
    return f"{name}: val mIoU {result['history'][-1]['val_miou']:.3f}"


#: The model card's levers table: each group of arms beside its reference (the first), under one protocol.
LEVER_GROUPS = (
    ("paper", "reference-init"),
    ("scratch-4-epochs", "distilled"),
    ("scratch-16-epochs", "distilled-long"),
    ("finetune-ce", "finetune-cats", "finetune-copy-paste", "finetune-cats-copy-paste"),
    ("finetune-cats-copy-paste", "finetune-cats-copy-paste-hints"),
    ("teacher-none", "teacher-fused", "teacher-fused-everyday", "teacher-ade20k"),
)


def figures(result: dict) -> dict[str, float | None]:
    """3-source mIoU, person/animal and vehicle IoU, and the feral-cats cat IoU of one arm's summary. A summary
    without ``scores`` (an arm trained on the three sources before they were recorded) takes its last val epoch,
    which is the same pooled 3-source evaluation, and has no cat IoU."""
    if "scores" in result:
        three, cat = result["scores"]["three_sources"], result["scores"]["feral_cats"]["cat_iou"]
    else:
        last = result["history"][-1]
        three, cat = {"miou": last["val_miou"], "per_class_iou": last["val_per_class_iou"]}, None
    per_class = three["per_class_iou"]
    return {"miou": three["miou"], "person/animal": per_class["person/animal"], "vehicle": per_class["vehicle"],
            "cat": cat}  # fmt: skip


def arm_results() -> dict[str, list[dict]]:
    """The committed summaries by arm name, one entry per seed."""
    by_arm: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        by_arm.setdefault(result["arm"], []).append(result)
    return by_arm


def levers_table(groups: Sequence[Sequence[str]] = LEVER_GROUPS) -> str:
    """Markdown: per arm the mean and range over seeds of ``figures``, each group's arms against its first."""
    by_arm = {
        name: [figures(r) | {"seconds": r.get("seconds")} for r in results] for name, results in arm_results().items()
    }
    rows, shown = [], set()
    for reference, *arms in groups:
        ref = [r["miou"] for r in by_arm.get(reference, [])]
        for name in [reference, *arms][reference in shown :]:  # a reference already in the table is not repeated
            shown.add(name)
            runs = by_arm.get(name, [])
            if not runs:
                rows.append([name, "not run yet", "", "", "", "", "", ""])
                continue
            cats = [r["cat"] for r in runs if r["cat"] is not None]
            seconds = [sum(r["seconds"].values()) for r in runs if r["seconds"]]
            rows.append(
                [
                    name,
                    spread([r["miou"] for r in runs]),
                    f"{verdict([r['miou'] for r in runs], ref)} vs {reference}" if name != reference else "",
                    spread([r["person/animal"] for r in runs]),
                    spread([r["vehicle"] for r in runs]),
                    spread(cats) if cats else "",
                    f"{statistics.fmean(seconds) / 60:.0f} min" if seconds else "",
                    len(runs),
                ]
            )
    header = "arm|3-source mIoU|difference|person/animal|vehicle|cat IoU (feral-cats)|compute|seeds".split("|")
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.ablate", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("run", "list", "report"))
    parser.add_argument("--arms", nargs="+", help="arm names (default: all, in ARMS order)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of each arm (default: the arm's own, Arm.seeds)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each")
    parser.add_argument("--runs", type=Path, default=RUNS_DIR / "ablate", help="folder of the run folders")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.arms or ()) - set(ARMS_BY_NAME))
    if unknown:
        sys.exit(f"error: unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS_BY_NAME)}")
    arms = [ARMS_BY_NAME[n] for n in args.arms] if args.arms else list(ARMS)
    jobs = [(arm, seed) for arm in arms for seed in args.seeds or arm.seeds]
    runs = args.runs.resolve()
    if args.action == "list":
        for arm, seed in jobs:
            steps = [distill_command(arm, seed, runs)] if arm.distill else []
            for line in [*steps, command(arm, seed, runs)]:
                print(" ".join(line[1:]))
        return
    if args.action == "report":
        print(levers_table())
        return
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, runs), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
