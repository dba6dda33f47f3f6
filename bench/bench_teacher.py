"""The shipped SegFormer against its ADE20K teacher, end to end on the same photos, one thread each.

    python -m bench.bench_teacher [--runs 3] [--checkpoint checkpoints/segformer-b0-4class] [--images 12]
        [--json-out PATH]

Peer: the DeepLabV3-MobileNetV2 ADE20K teacher (train.teach, TFLite through ai-edge-litert, requirements-teach.txt)
at its 513x513 input. Both take the decoded RGB photo and return its (H, W) class ids: the student through
segformer.Segmenter (the app's path: normalise, the checkpoint's working scale, forward, upsample the logits,
argmax), the teacher through its fastest path (train.teach.Teacher.labels: letterbox resize, invoke, argmax over
its 150 classes mapped to the task classes, nearest resize to the photo; no softmax). Timed in turn on real
CamVid val photos (480x360), after a warm-up. Prints JSON with the medians and the teacher/student ratio (goal:
>= 2), the run's settings and the machine; ``--json-out`` also writes it to a file.
"""

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.interleave import interleaved
from bench.record import publish
from segformer import Segmenter
from segformer.checkpoint import DEFAULT_CHECKPOINT
from train.paths import DATASETS_DIR, MODELS_DIR
from train.teach import TEACHERS, Teacher

GOAL = 2.0


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_teacher", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed passes over the photos")
    parser.add_argument("--images", type=int, default=12, help="CamVid val photos")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint stem, or hf://ORG/REPO/NAME")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = sorted((DATASETS_DIR / "camvid" / "images" / "val").glob("*.jpg"))[: args.images]
    photos = [np.array(Image.open(p).convert("RGB")) for p in paths]
    segmenter = Segmenter.from_checkpoint(args.checkpoint)
    teacher = Teacher(TEACHERS["ade20k"], MODELS_DIR, threads=1)

    def student() -> None:
        for photo in photos:
            segmenter(photo)

    def ade20k() -> None:
        for photo in photos:
            teacher.labels(photo)

    seconds = interleaved({"student": student, "ade20k_teacher": ade20k}, args.runs, warmup=1)
    per_photo = {name: statistics.median(s) / len(photos) for name, s in seconds.items()}
    ratio = per_photo["ade20k_teacher"] / per_photo["student"]
    report = {
        "photos": f"{len(photos)} CamVid val, {photos[0].shape[1]}x{photos[0].shape[0]}",
        "seconds_per_photo": {k: round(v, 4) for k, v in per_photo.items()},
        "teacher_over_student": round(ratio, 2),
        "goal": f">= {GOAL}",
        "met": ratio >= GOAL,
        "checkpoint": Path(args.checkpoint).name,
        "student_working_short_side": segmenter.short_side,
    }
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
