"""Evaluate a checkpoint: dataset-wide confusion matrix -> mIoU, per-class IoU, pixel accuracy.

    python -m train.evaluate --checkpoint checkpoints/segformer-b0-4class --data ../shared/datasets/camvid \\
        [more folders ...] --split val [--json]

``--data`` is any folder in the shared layout (images/<split>, labels/<split>, classes.txt): a raw source, whose
labels are mapped to the task classes by name, or a folder written by ``train.prepare``. Given several folders,
each is scored and so are all of them together (their confusion matrices summed, as training's val mIoU is).
Predictions go through the one prediction path, ``segformer.Segmenter`` at the checkpoint's working scale (logits
upsampled to the label's full resolution, then argmax); ignore pixels are excluded, and pixels with a partial label
(e.g. feral-cats' "not a cat", and the pixels around ccp-people's one person and oxford-pets' one pet, read as
task.classes.SCORING_TABLES says) are scored apart: mIoU counts single-class pixels only, ``outside_admissible`` is
the share of partial pixels predicted outside their set, and ``per_class_iou_with_partial`` counts those predictions
as false positives (see task.metrics).
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from segformer.checkpoint import checked_working_short_side
from segformer.config import FFN_PADDINGS
from segformer.model import swap_ffn_padding
from segformer.predict import class_argmax
from segformer.segmenter import Segmenter
from task.classes import IGNORE_INDEX, PARTIAL_IDS
from task.metrics import confusion_matrix, partial_counts, scores
from train.data import SegmentationFolder
from train.losses import partial_cross_entropy
from train.progress import progress


@torch.no_grad()
def evaluate(segmenter: Segmenter, dataset: Dataset, *, show_progress: bool = True) -> dict:
    """Scores of ``segmenter`` on every image of ``dataset`` at full resolution, plus the mean cross-entropy.

    Each image is segmented as the app does (``segformer.Segmenter``: at the segmenter's working scale, or at the
    image's own size when it has none), the logits upsampled to the image's size, which is its label's.

    Under torch.distributed each rank takes every world-th image and the confusion matrix and loss sums are
    reduced, so the result is the same as on one process.
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    model = segmenter.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    num_classes = len(segmenter.classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    partial = torch.zeros(len(PARTIAL_IDS), num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # summed pixel losses, pixels
    indices = range(rank, len(dataset), world)
    for index in progress(indices, "evaluate", unit="images") if show_progress and rank == 0 else indices:
        image, mask = dataset[index]
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"image {index}: {tuple(image.shape[-2:])} pixels, its label {tuple(mask.shape[-2:])}")
        full = segmenter.logits(image.to(device))[None]
        mask = mask[None].to(device)
        loss_sum[0] += partial_cross_entropy(full, mask, reduction="sum")
        loss_sum[1] += (mask != IGNORE_INDEX).sum()
        pred = class_argmax(full)
        confusion += confusion_matrix(pred, mask, num_classes, IGNORE_INDEX)
        partial += partial_counts(pred, mask, num_classes)
    if world > 1:
        for total in (confusion, partial, loss_sum):
            dist.all_reduce(total)
    model.train(was_training)
    result = scores(confusion.cpu(), list(segmenter.classes), partial.cpu())
    result["loss"] = (loss_sum[0] / loss_sum[1].clamp(min=1)).item()
    result["images"] = len(dataset)
    result["confusion"] = confusion.cpu().tolist()
    result["partial"] = partial.cpu().tolist()
    return result


def combine(results: Sequence[dict], class_names: Sequence[str]) -> dict:
    """Scores over several evaluated datasets together: their confusion matrices and losses summed."""
    confusion = sum(torch.tensor(r["confusion"]) for r in results)
    partial = sum(torch.tensor(r["partial"]) for r in results)
    result = scores(confusion, list(class_names), partial)
    labelled = [r["pixels"] + r["partial_pixels"] for r in results]
    result["loss"] = sum(r["loss"] * n for r, n in zip(results, labelled, strict=True)) / max(sum(labelled), 1)
    result["images"] = sum(r["images"] for r in results)
    result["confusion"] = confusion.tolist()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint stem or its .safetensors/.json file")
    parser.add_argument(
        "--data", type=Path, nargs="+", required=True, help="dataset folders in the shared layout (one or more)"
    )
    parser.add_argument("--split", default="val")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--ffn-padding", choices=FFN_PADDINGS, help="swap the padding of Mix-FFN's depthwise conv (no retraining)"
    )
    parser.add_argument(
        "--working-short-side",
        type=int,
        help="scale each image's shorter side to this many pixels (default: the checkpoint's own working scale; "
        "0: each image at its own size)",
    )
    args = parser.parse_args(argv)
    try:
        segmenter = Segmenter.from_checkpoint(args.checkpoint)
        if args.working_short_side is not None:
            short_side = checked_working_short_side(args.working_short_side) if args.working_short_side else None
            segmenter = replace(segmenter, short_side=short_side)
        if segmenter.short_side is None:  # each image at its own size, however large
            segmenter = replace(segmenter, max_side=None)
        if args.ffn_padding is not None:
            swap_ffn_padding(segmenter.model, args.ffn_padding)
        datasets = {str(folder): SegmentationFolder(folder, args.split, scoring=True) for folder in args.data}
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    per_source = {name: evaluate(segmenter, dataset, show_progress=not args.json) for name, dataset in datasets.items()}
    head = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "ffn_padding": segmenter.model.config.ffn_padding,
        "working_short_side": segmenter.short_side,
    }
    if len(per_source) == 1:
        [(name, result)] = per_source.items()
        report = {**head, "data": name, **result}
    else:
        report = {**head, "per_source": per_source, "overall": combine(list(per_source.values()), segmenter.classes)}
    if args.json:
        print(json.dumps(report))
        return
    rows = {**per_source, "overall": report["overall"]} if len(per_source) > 1 else per_source
    label = f"data [{args.split}]"
    width = max(len(name) for name in (*rows, label))
    columns = {cls: max(len(cls), 6) for cls in segmenter.classes}
    print(f"{label:<{width}}  images  mIoU    pixel acc  " + "  ".join(f"{c:<{w}}" for c, w in columns.items()))
    for name, result in rows.items():
        ious = (("n/a" if iou is None else f"{iou:.4f}") for iou in result["per_class_iou"].values())
        cells = "  ".join(f"{iou:<{w}}" for iou, w in zip(ious, columns.values(), strict=True))
        numbers = f"{result['images']:>6}  {result['miou']:.4f}  {result['pixel_acc']:.4f}"
        print(f"{name:<{width}}  {numbers}     {cells}".rstrip())
    for name, result in rows.items():
        if result["partial_pixels"]:
            ious = ", ".join(f"{c} {v:.4f}" for c, v in result["per_class_iou_with_partial"].items() if v is not None)
            print(
                f"{name}: {result['partial_pixels']} pixels with a partial label, "
                f"{result['outside_admissible']:.2%} predicted outside their set; IoU counting them: {ious}"
            )


if __name__ == "__main__":
    main()
