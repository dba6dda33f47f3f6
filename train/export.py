"""Export a run's best checkpoint for shipping: fp16 safetensors (+ JSON metadata with the full history) and
the curves PNG of that history, e.g. into ``checkpoints/`` where the app finds it.

    python -m train.export --run runs/b0-256 --out checkpoints/segformer-b0-4class
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from segformer import load_checkpoint, save_checkpoint
from segformer.checkpoint import checkpoint_paths
from train.curves import save_curves

# A Hugging Face Space rejects files over 10 MB without Git LFS.
MAX_BYTES = 10 * 1024 * 1024


def export(run: Path, out: Path, which: str = "best") -> Path:
    """Write ``run/which`` as fp16 to ``out`` and its curves beside it; return the weights path.

    The curves are drawn from the exported checkpoint's own history, which ends at the epoch of its weights (the
    run's curves.png may go on past the best epoch).
    """
    model, meta = load_checkpoint(run / which)
    save_checkpoint(out, model, meta, dtype=torch.float16)  # it rewrites config, num_classes and dtype
    weights, _ = checkpoint_paths(out)
    if weights.stat().st_size > MAX_BYTES:
        raise ValueError(f"{weights} is {weights.stat().st_size / 2**20:.1f} MiB, over the 10 MiB a Space takes")
    save_curves(meta["history"], out.with_name(out.name + ".curves.png"))
    return weights


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training output folder (train.train --out)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint stem to write")
    parser.add_argument("--which", choices=("best", "last"), default="best")
    args = parser.parse_args(argv)
    try:
        weights = export(args.run, args.out, args.which)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"wrote {weights} ({weights.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
