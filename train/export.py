"""Export a run's best checkpoint for shipping: fp16 safetensors (+ JSON metadata with the full history) and
the curves PNG of that history, e.g. into ``checkpoints/`` where the app finds it; and/or the network as ONNX.

    python -m train.export --run runs/b0-256 --out checkpoints/segformer-b0-4class [--working-short-side S]
        [--onnx segformer.onnx]
    python -m train.export --checkpoint checkpoints/segformer-b0-4class --onnx segformer.onnx
"""

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from segformer import SegFormer, load_checkpoint, save_checkpoint
from segformer.checkpoint import atomic_write, checked_working_short_side, checkpoint_paths
from task.curves import save_curves

# A Hugging Face Space rejects files over 10 MB without Git LFS.
MAX_BYTES = 10 * 1024 * 1024
#: ONNX opset of the export: 17 is the first with LayerNormalization (one node per LayerNorm instead of a
#: decomposition into ReduceMean, Sub, Pow, Sqrt, Div...), and onnxruntime has run it since 1.14.
ONNX_OPSET = 17


def export(run: Path, out: Path, which: str = "best", working_short_side: int | None = None) -> Path:
    """Write ``run/which`` as fp16 to ``out`` and its curves beside it; return the weights path.

    ``working_short_side`` (chosen on val) goes into the metadata: the shorter side, in pixels, that the app, the
    CLI and ``train.evaluate`` then scale each image to before the network.

    The curves are drawn from the exported checkpoint's own history, which ends at the epoch of its weights (the
    run's curves.png may go on past the best epoch).
    """
    model, meta = load_checkpoint(run / which)
    if working_short_side is not None:
        meta = {**meta, "working_short_side": checked_working_short_side(working_short_side)}
    save_checkpoint(out, model, meta, dtype=torch.float16)  # it rewrites config, num_classes and dtype
    weights, _ = checkpoint_paths(out)
    if weights.stat().st_size > MAX_BYTES:
        raise ValueError(f"{weights} is {weights.stat().st_size / 2**20:.1f} MiB, over the 10 MiB a Space takes")
    save_curves(meta["history"], out.with_name(out.name + ".curves.png"))
    return weights


def export_onnx(model: SegFormer, path: Path) -> Path:
    """Write the network in eval mode (float32) as ONNX: input ``pixel_values`` (batch, 3, height, width),
    normalised as for ``model``; output ``logits`` (batch, classes, logit_height, logit_width), a quarter of the
    input's size rounded up, to be upsampled to the image's size before the argmax (as ``segformer.predict``).

    Batch, height and width are dynamic: the decoder's interpolation matrices are built in the graph from the
    feature maps' sizes (EyeLike, then Resize, the same bilinear weights as F.interpolate), so one file serves
    every input size of at least 32 x 32. The TorchScript-based exporter (``dynamo=False``) writes opset 17 in
    seconds; the torch.export-based one also works, but only at opset 18 and in minutes here.
    """
    model = model.eval()
    example = torch.zeros(1, 3, 64, 64, dtype=next(model.parameters()).dtype)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the input checks and the fixed-size loops it records as constants; both hold
        # for any input size (and the deprecation warning of this exporter says nothing about this model).
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        atomic_write(
            path,
            lambda tmp: torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["pixel_values"],
                output_names=["logits"],
                dynamic_axes={
                    "pixel_values": {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 2: "logit_height", 3: "logit_width"},
                },
            ),
        )
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m train.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="training output folder (train.train --out)")
    source.add_argument("--checkpoint", type=Path, help="checkpoint stem to export as ONNX (with --onnx)")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of --run")
    parser.add_argument("--out", type=Path, help="fp16 checkpoint stem to write from --run")
    parser.add_argument(
        "--working-short-side", type=int, help="with --out: the shorter side images are scaled to (chosen on val)"
    )
    parser.add_argument("--onnx", type=Path, help="ONNX file to write (of the --out checkpoint when given)")
    args = parser.parse_args(argv)
    if args.out is None and args.onnx is None:
        parser.error("nothing to write: give --out, --onnx or both")
    if args.checkpoint is not None and args.out is not None:
        parser.error("--out writes a run's checkpoint: use it with --run")
    if args.working_short_side is not None and args.out is None:
        parser.error("--working-short-side goes with --out")
    try:
        source = args.checkpoint or args.run / args.which
        if args.out is not None:
            weights = export(args.run, args.out, args.which, args.working_short_side)
            print(f"wrote {weights} ({weights.stat().st_size / 2**20:.2f} MiB)")
            source = args.out  # the ONNX file then holds the shipped (fp16-rounded) weights
        if args.onnx is not None:
            path = export_onnx(load_checkpoint(source)[0], args.onnx)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB, opset {ONNX_OPSET})")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
