"""Uniform model soup (Wortsman et al., ICML 2022): the element-wise mean of the weights of several checkpoints
fine-tuned from one starting point, e.g. the same stage run with and without class weights.

    python -m train.soup --checkpoints runs/b0-256-c4/best runs/b0-256-c4w/best --out runs/b0-256-soup/best

Every floating tensor is averaged, BatchNorm running statistics included (integer counters are taken from the
first ingredient). The metadata is the first ingredient's (its history drives the curves) plus ``soup``: each
ingredient's name and full history (and its own ``soup``, for a soup of soups). Averaging only helps checkpoints
that share a starting point: ones trained apart sit in different basins, and their mean is a poor model; score the
soup with ``train.evaluate``. A soup of a fine-tuned model and the weights it started from is WiSE-FT's weight-space
interpolation (Wortsman et al., CVPR 2022) with mixing coefficient 0.5.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from segformer import load_checkpoint, save_checkpoint
from segformer.checkpoint import checkpoint_paths


def soup(checkpoints: Sequence[str | Path], out: Path) -> Path:
    """Write the uniform soup of ``checkpoints`` (float32) to ``out``; return the weights path."""
    if len(checkpoints) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    loaded = [load_checkpoint(path) for path in checkpoints]
    model, meta = loaded[0]
    for path, (other, other_meta) in zip(checkpoints[1:], loaded[1:], strict=True):
        # The models' configs, not their JSON: a checkpoint written before a config field existed is the same model.
        differ = ["config"] if other.config != model.config else []
        differ += [f for f in ("num_classes", "classes", "mean", "std") if other_meta.get(f) != meta.get(f)]
        if differ:
            raise ValueError(f"{path} differs from {checkpoints[0]} in {differ[0]}: they cannot be averaged")
    states = [m.state_dict() for m, _ in loaded]
    averaged = {
        name: torch.stack([s[name] for s in states]).mean(0) if tensor.is_floating_point() else tensor
        for name, tensor in states[0].items()
    }
    model.load_state_dict(averaged)
    ingredients = [  # an ingredient that is itself a soup keeps its own ingredients
        {"checkpoint": str(path), "history": m.get("history", []), **({"soup": m["soup"]} if "soup" in m else {})}
        for path, (_, m) in zip(checkpoints, loaded, strict=True)
    ]
    save_checkpoint(out, model, {**meta, "soup": ingredients})  # it rewrites config, num_classes and dtype
    return checkpoint_paths(out)[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.soup", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="two or more checkpoint stems")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint stem to write")
    args = parser.parse_args(argv)
    try:
        weights = soup(args.checkpoints, args.out)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"wrote {weights}")


if __name__ == "__main__":
    main()
