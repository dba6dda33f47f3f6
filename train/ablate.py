"""The training arms behind docs/DISCUSSION.md: each design variant trained under one short protocol, two seeds.

    python -m train.ablate run [--arms NAME ...] [--jobs 2] [--runs runs/ablate]
    python -m train.ablate list

Two protocols (PROTOCOLS):
- ``scratch``: B0 from random weights with the ``scratch`` recipe, 2 epochs of the three sources' train splits,
  128-pixel crops drawn around the prepared 256-pixel short side (``--base-size 256``), so the image scale is the
  shipped model's and only the context per crop is smaller. Scored on the full val splits.
- ``finetune``: the shipped checkpoint, trained 1 more epoch (192-pixel crops at the 256-pixel scale) at a low rate
  (5e-5), for variants that keep its weights (the loss, Q5).
- ``frozen``: the shipped checkpoint's encoder, fixed, under a freshly initialised decoder trained for 1 epoch of
  256-pixel crops (Q7 compares decoders on the same features).

Every arm runs as ``python -m train.train`` with one torch thread, is resumable (a rerun continues or skips it), and
leaves a small JSON of its history in ``docs/discussion/results/arms/`` for ``train.discussion`` to tabulate.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from segformer import load_checkpoint
from segformer.checkpoint import save_json

SHIPPED = "checkpoints/segformer-b0-4class"
RESULTS = Path("docs/discussion/results/arms")
SEEDS = (0, 1)

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
}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    name: str
    question: str  # the DISCUSSION.md question it answers
    protocol: str
    flags: tuple[str, ...] = ()


#: In the order they run: both seeds of an arm before the next arm.
ARMS = (
    Arm("paper", "Q1-Q6 (reference)", "scratch"),
    Arm("non-overlap", "Q1", "scratch", ("--patch-merging", "non_overlap")),
    Arm("max-pool", "Q1", "scratch", ("--patch-merging", "max_pool")),
    Arm("dwconv-mixer", "Q6", "scratch", ("--token-mixer", "dwconv")),
    Arm("lovasz", "Q5", "scratch", ("--loss", "lovasz")),
    Arm("ce+lovasz", "Q5", "scratch", ("--loss", "ce+lovasz")),
    Arm("ffn-0-act", "Q3", "scratch", ("--ffn-activations", "0")),
    Arm("ffn-2-act", "Q3", "scratch", ("--ffn-activations", "2")),
    Arm("frozen-all-mlp", "Q7", "frozen"),
    Arm("frozen-fpn", "Q7", "frozen", ("--decoder", "fpn", "--decoder-dim", "96")),
    Arm("crop-64", "Q8", "scratch", ("--crop-size", "64")),
    Arm("finetune-ce", "Q5 (reference)", "finetune"),
    Arm("finetune-ce+lovasz", "Q5", "finetune", ("--loss", "ce+lovasz")),
    Arm("reference-init", "initialisation (MODEL_CARD.md)", "scratch", ("--weight-init", "reference")),
    Arm("full-attention", "Q2", "scratch", ("--sr-ratios", "1", "1", "1", "1")),
)


def command(arm: Arm, seed: int, runs: Path) -> list[str]:
    """The train.train command line of one arm and seed."""
    out = runs / f"{arm.name}-s{seed}"
    resume = ["--resume"] if (out / "last.json").is_file() else []
    flags = [*PROTOCOLS[arm.protocol], *arm.flags, "--seed", str(seed), "--workers", "1", "--out", str(out)]
    return [sys.executable, "-m", "train.train", *flags, *resume]


def finished(arm: Arm, seed: int, runs: Path) -> dict | None:
    """The run's checkpoint metadata if it has trained its whole schedule, else None."""
    meta_path = runs / f"{arm.name}-s{seed}" / "last.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    done = len(meta["history"]) - meta.get("inherited_epochs", 0)
    return meta if done >= meta["recipe"]["epochs"] else None


def summary(arm: Arm, seed: int, runs: Path, meta: dict) -> dict:
    """The small result committed for one arm and seed: its settings, size and per-epoch val scores."""
    model, _ = load_checkpoint(runs / f"{arm.name}-s{seed}" / "last")
    keys = ("epoch", "step", "train_loss", "val_loss", "val_miou", "val_per_class_iou", "val_pixel_acc")
    return {
        "arm": arm.name,
        "question": arm.question,
        "protocol": arm.protocol,
        "flags": list(arm.flags),
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
        "train_images_per_s": meta["history"][-1]["train_images_per_s"],
        "history": [{k: h[k] for k in keys} for h in meta["history"][meta.get("inherited_epochs", 0) :]],
    }


def run_one(arm: Arm, seed: int, runs: Path) -> str:
    """Train (or continue) one arm and seed, then write its summary; returns a status line."""
    name = f"{arm.name}-s{seed}"
    meta = finished(arm, seed, runs)
    if meta is None:
        runs.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"{name}: training", flush=True)
        with open(runs / f"{name}.log", "a") as log:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            code = subprocess.run(command(arm, seed, runs), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            return f"{name}: failed (exit {code}); see {runs / name}.log"
        meta = finished(arm, seed, runs)
        if meta is None:
            return f"{name}: stopped before the end of its schedule"
        print(f"{name}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    result = summary(arm, seed, runs, meta)
    save_json(RESULTS / f"{name}.json", result)
    return f"{name}: val mIoU {result['history'][-1]['val_miou']:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.ablate", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("run", "list"))
    parser.add_argument("--arms", nargs="+", help="arm names (default: all, in ARMS order)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each")
    parser.add_argument("--runs", default="runs/ablate", help="folder of the run folders")
    args = parser.parse_args(argv)
    by_name = {arm.name: arm for arm in ARMS}
    unknown = sorted(set(args.arms or ()) - set(by_name))
    if unknown:
        sys.exit(f"error: unknown arm(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    arms = [by_name[n] for n in args.arms] if args.arms else list(ARMS)
    jobs = [(arm, seed) for arm in arms for seed in SEEDS]
    runs = Path(args.runs)
    if args.action == "list":
        for arm, seed in jobs:
            print(" ".join(command(arm, seed, runs)[1:]))
        return
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, runs), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
