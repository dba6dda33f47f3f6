"""Export a run's best checkpoint for shipping: fp16 safetensors (+ JSON metadata with the full history) and
the curves PNG of that history, e.g. into ``checkpoints/`` where the app finds it; and/or the network as ONNX;
and/or a folder in the ``transformers`` layout.

    python -m train.export --run runs/b0-256 --out checkpoints/segformer-b0-4class [--working-short-side S]
        [--onnx segformer.onnx] [--transformers DIR]
    python -m train.export --checkpoint checkpoints/segformer-b0-4class --onnx segformer.onnx
    python -m train.export --checkpoint checkpoints/segformer-b0-4class --transformers segformer-b0-4class-hf

``--checkpoint`` also takes ``hf://ORG/REPO/NAME``.
"""

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from segformer import SegFormer, Segmenter, load_checkpoint, save_checkpoint
from segformer.checkpoint import atomic_write, checked_working_short_side, checkpoint_paths
from segformer.transformers_weights import config_to_transformers, to_transformers_state_dict
from task.curves import save_curves

# A Hugging Face Space rejects files over 10 MB without Git LFS.
MAX_BYTES = 10 * 1024 * 1024
#: ONNX opset of the export: 17 is the first with LayerNormalization (one node per LayerNorm instead of a
#: decomposition into ReduceMean, Sub, Pow, Sqrt, Div...), and onnxruntime has run it since 1.14.
ONNX_OPSET = 17


def export(run: Path, out: Path, which: str = "best", working_short_side: int | None = None) -> Path:
    """Write ``run/which`` as fp16 to ``out`` and its curves beside it; return the weights path.

    ``working_short_side`` (chosen on val) goes into the metadata: the shorter side, in pixels, that the app, the
    CLI and ``train.evaluate`` then scale each image to before the network. So does ``exported_from``, the
    checkpoint stem written out (``run/which``), which names the ``train.evaluate`` report that scored these weights
    even where they are a soup, whose recipe is its first ingredient's.

    The curves are drawn from the exported checkpoint's own history, which ends at the epoch of its weights (the
    run's curves.png may go on past the best epoch).
    """
    model, meta = load_checkpoint(run / which)
    meta = {**meta, "exported_from": (run / which).as_posix()}
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

    Batch, height and width are dynamic: the decoder's upsampling is a Resize to the size of the stage 1 feature
    map, read from the graph (the same bilinear weights as F.interpolate), so one file serves every input size of
    at least 32 x 32. The TorchScript-based exporter (``dynamo=False``) writes opset 17 in seconds; the
    torch.export-based one also works, but only at opset 18 and in minutes here.
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


def processor_settings(segmenter: Segmenter) -> dict:
    """The settings of transformers' ``SegformerImageProcessor`` closest to ``segmenter``'s preprocessing.

    With a working scale the processor resizes as :func:`segformer.working_size` does (shorter side to the working
    scale, longer side at most ``max_side``, aspect kept), but truncates the longer side where working_size rounds
    it, and resizes the uint8 image (rounded again to uint8) before normalising, where Segmenter resizes the
    normalised float image. Without one the processor leaves each image at its own size (it has no cap on the longer
    side alone). docs/usage.md gives the agreement of the masks.
    """
    if segmenter.short_side is None or segmenter.max_side is None:
        resize = {"do_resize": False}
    else:
        resize = {"size": {"shortest_edge": segmenter.short_side, "longest_edge": segmenter.max_side}}
    return {**resize, "image_mean": list(segmenter.mean), "image_std": list(segmenter.std), "do_reduce_labels": False}


def model_card(segmenter: Segmenter, name: str) -> str:
    """README.md of the exported folder: what the model is, its classes and colours, its preprocessing, its use."""
    meta = segmenter.metadata
    rows = "\n".join(
        f"| {index} | {label} | `#{bytes(colour.tolist()).hex()}` |"
        for index, (label, colour) in enumerate(zip(segmenter.classes, segmenter.palette, strict=True))
    )
    sources = sorted({source for part in meta.get("data", {}).values() for source in part.get("counts", {})})
    if "size" in processor_settings(segmenter):
        resizing = f"""The checkpoint runs at a working scale: each image is scaled so that its shorter side is
{segmenter.short_side} pixels and its longer side at most {segmenter.max_side}. The image processor's `size`
(`shortest_edge`, `longest_edge`; transformers 5 reads it) follows the same rule, but truncates the longer side where
the original rounds it, and resizes the 8-bit image before normalising it where the original resizes the normalised
one. Where both sizes agree the masks agree on all but a few pixels in ten thousand; where the processor's longer
side is one pixel shorter the sampling grid moves, and a small photo's mask can change at a few per cent of its
pixels."""
    else:
        resizing = "The checkpoint runs each image at its own size, and so does the image processor."
    return f"""---
library_name: transformers
pipeline_tag: image-segmentation
tags:
  - segformer
  - semantic-segmentation
---

# {name}

SegFormer (Xie et al., NeurIPS 2021) with {len(segmenter.classes)} classes, exported from the checkpoint
`{name}` of a SegFormer written from the paper's parts in PyTorch; in `transformers`'
`SegformerForSemanticSegmentation` its logits equal the original's to 1e-4. Training data:
{", ".join(sources) or "not recorded in the checkpoint"}.
The weights' licence follows from these sources.

| id | label | colour |
|---|---|---|
{rows}

## Use

```python
from transformers import pipeline

segment = pipeline("image-segmentation", model="PATH_OR_REPO")
for region in segment("photo.jpg"):  # one entry per class present
    print(region["label"], region["mask"])  # the mask: a PIL image at the photo's size, 255 where the class is
```

## Preprocessing

Images are normalised with mean {list(segmenter.mean)} and std {list(segmenter.std)}; the logits are upsampled to
the image's size before the argmax. {resizing}
"""


def export_transformers(segmenter: Segmenter, out: Path, name: str) -> Path:
    """Write ``segmenter`` as a folder that transformers loads offline (``SegformerForSemanticSegmentation``,
    ``pipeline("image-segmentation")``): ``config.json`` (a ``SegformerConfig`` with ``id2label``/``label2id``),
    ``model.safetensors`` (float32, the published layout), ``preprocessor_config.json`` (:func:`processor_settings`)
    and a model card ``README.md``. Needs transformers (requirements-dev.txt). Returns ``out``."""
    from transformers import SegformerConfig, SegformerImageProcessor

    config = SegformerConfig(**config_to_transformers(segmenter.model.config, segmenter.classes))
    state = {k: v.float() if v.is_floating_point() else v for k, v in segmenter.model.state_dict().items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in to_transformers_state_dict(state).items()}
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    atomic_write(out / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    SegformerImageProcessor(**processor_settings(segmenter)).save_pretrained(out)
    atomic_write(out / "README.md", lambda tmp: tmp.write_text(model_card(segmenter, name)))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m train.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="training output folder (train.train --out)")
    source.add_argument(
        "--checkpoint", help="checkpoint stem or hf://ORG/REPO/NAME to export (with --onnx or --transformers)"
    )
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of --run")
    parser.add_argument("--out", type=Path, help="fp16 checkpoint stem to write from --run")
    parser.add_argument(
        "--working-short-side", type=int, help="with --out: the shorter side images are scaled to (chosen on val)"
    )
    parser.add_argument("--onnx", type=Path, help="ONNX file to write (of the --out checkpoint when given)")
    parser.add_argument(
        "--transformers", type=Path, metavar="DIR", help="folder in the transformers layout to write (as --onnx)"
    )
    args = parser.parse_args(argv)
    if args.out is None and args.onnx is None and args.transformers is None:
        parser.error("nothing to write: give --out, --onnx, --transformers or several")
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
        if args.transformers is not None:
            name = str(source).rstrip("/").rsplit("/", 1)[-1].removesuffix(".safetensors").removesuffix(".json")
            folder = export_transformers(Segmenter.from_checkpoint(source), args.transformers, name)
            print(f"wrote {folder}: config.json, model.safetensors, preprocessor_config.json, README.md")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
