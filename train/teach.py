"""Teacher targets: pretrained segmentation networks' 4-class probabilities for every image of prepared folders.

    python -m train.teach --data data/4class-256 data/feral-cats-256 [--models ../shared/models] [--workers 2]
    python -m train.teach --data ... --score [--json results/teachers-val.json]     (each fusion rule on val)

Two DeepLabV3-MobileNetV2 networks (TFLite, Apache-2.0, run by ``ai-edge-litert``; requirements-teach.txt) are the
class teachers: one trained on ADE20K (the dataset this task was defined on, 150 classes, 513x513) and one on PASCAL
VOC (21 classes, 257x257). For each image the teacher's softmax over its upstream classes is summed inside each task
class through the one class table (task.classes; a partial entry such as ADE20K's "field" = {background, plant}
shares its mass equally between its classes), resized to the prepared image. A third, MediaPipe's selfie
segmentation (Apache-2.0, 256x256), gives the probability that a pixel is the photo's prominent subject (a person
or a pet, never a small or distant one); the fusion rules gate it with the class teachers. Each is stored as::

    DIR/teachers/<teacher>/<split>/<stem>.png    uint8, RGBA channel c = round(255 p_c), or grey (the selfie
                                                 teacher's foreground); read by decode
    DIR/teachers/<teacher>.json                  the model file, its sha256, preprocessing, counts

Each file is written atomically and a rerun skips the images already done, so an interrupted run resumes; a run
with a different model file (sha256) than the one recorded refuses to mix the two. The targets are made once and
read by training through train.teacher_targets (the format's decoder), which fuses the teachers. ``--score``
scores every fusion rule's argmax against the val labels of each folder, as train.evaluate scores a model.
"""

import argparse
import hashlib
import json
import multiprocessing
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segformer.checkpoint import atomic_write
from task.classes import (
    CLASS_NAMES,
    IGNORE_INDEX,
    NUM_CLASSES,
    PARTIAL_IDS,
    UNLABELLED_SOURCES,
    admissible_classes,
    lookup_table,
    read_classes_txt,
)
from task.metrics import confusion_matrix, partial_counts, scores
from train.data import SegmentationFolder
from train.paths import MODELS_DIR
from train.prepare import SPLITS, image_files
from train.progress import progress
from train.teacher_targets import FUSIONS, TEACHER_DIR, TEACHER_NAMES, encode, fuse, read_targets, target_path


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher network: its file, input size, resize mode and input scaling (the models' README), and its class
    table."""

    file: str
    size: int
    resize: str  # "letterbox" (long side to size, image top-left, padded) or "stretch" (to the square)
    table: str | None  # the task.classes source table that maps its output channels; None: a foreground probability
    unannotated: tuple[int, ...] = ()  # output channels of the upstream "not annotated" label, left out
    scale: str = "signed"  # input RGB scaled to [-1, 1] (DeepLab's "signed") or to [0, 1] ("unit", MediaPipe's)


#: The teachers. ADE20K letterboxed and VOC stretched: the better of the two on these datasets (models' README);
#: the selfie teacher stretched and scaled to [0, 1], as MediaPipe's own graph feeds it.
TEACHERS: dict[str, TeacherSpec] = {  # keys: train.teacher_targets.TEACHER_NAMES
    "ade20k": TeacherSpec("deeplabv3-mobilenetv2-ade20k-513.tflite", 513, "letterbox", "ade20k", unannotated=(0,)),
    "voc": TeacherSpec("deeplabv3-mobilenetv2-voc-257.tflite", 257, "stretch", "pascal-voc"),
    "selfie": TeacherSpec("mediapipe-selfie-segmentation-256.tflite", 256, "stretch", None, scale="unit"),
}
assert tuple(TEACHERS) == TEACHER_NAMES


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def task_matrix(names_by_id: dict[int, str], table: str, unannotated: Sequence[int] = ()) -> torch.Tensor:
    """(upstream channels, NUM_CLASSES) float: row k spreads channel k's probability over its task classes.

    A channel of one task class puts all of it there, a partial entry shares it equally, and an ignored or
    ``unannotated`` channel has a zero row (it is dropped before the softmax, see Teacher.probabilities).
    """
    lut = lookup_table(names_by_id, table)
    matrix = torch.zeros(max(names_by_id) + 1, NUM_CLASSES)
    for channel in names_by_id:
        classes = sorted(admissible_classes(int(lut[channel])))
        if channel in unannotated or lut[channel] == IGNORE_INDEX or not classes:
            continue
        matrix[channel, classes] = 1 / len(classes)
    return matrix


class Teacher:
    """A TFLite segmentation network that returns 4-class probabilities (a class teacher) or the foreground
    probability (the selfie teacher) for an RGB image (one thread)."""

    def __init__(self, spec: TeacherSpec, models_dir: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter  # a training-time dependency only

        self.spec = spec
        path = models_dir / spec.file
        if not path.is_file():
            raise FileNotFoundError(f"teacher model not found: {path} (see --models)")
        if spec.table is not None:
            classes = path.with_name(path.name.removesuffix(".tflite") + ".classes.txt")
            self.matrix = task_matrix(read_classes_txt(classes), spec.table, spec.unannotated)
            self.keep = self.matrix.sum(1) > 0
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        """The network's (h, w, C) output over the image region of its input (letterbox padding cropped off):
        logits, or for the selfie teacher the foreground probability (C = 1)."""
        height, width = rgb.shape[:2]
        size = self.spec.size
        if self.spec.resize == "stretch":
            resized = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
            region = (size, size)
        else:
            scale = size / max(height, width)
            region = (max(1, round(width * scale)), max(1, round(height * scale)))
            resized = Image.fromarray(rgb).resize(region, Image.Resampling.BILINEAR)
        x = np.zeros((size, size, 3), np.float32)  # 0 after scaling is the README's grey padding
        pixels = np.asarray(resized, np.float32)
        x[: region[1], : region[0]] = pixels / 255 if self.spec.scale == "unit" else pixels / 127.5 - 1
        self.interpreter.set_tensor(self.input, x[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0, : region[1], : region[0]]

    def probabilities(self, rgb: np.ndarray) -> torch.Tensor:
        """(NUM_CLASSES, H, W) float probabilities at the image's size: the softmax over the upstream classes,
        summed inside each task class; for the selfie teacher (1, H, W), its foreground probability resized."""
        # The logits are resized (as the models' README does) before the softmax, which then runs at the image's
        # own, usually smaller, size; (1, h, w, C) permuted is channels-last, which the resize reads as it is.
        logits = torch.from_numpy(self.logits(rgb))[None].permute(0, 3, 1, 2)
        logits = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
        if self.spec.table is None:
            return logits.clamp(0, 1)
        probs = torch.einsum("khw,kc->chw", logits[self.keep].softmax(0), self.matrix[self.keep])
        return probs / probs.sum(0, keepdim=True).clamp(min=1e-6)

    def labels(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W) task ids the fast way, as a deployed teacher would: the argmax over the upstream logits at the
        network's size, mapped to its task class (a shared class to its first), resized to the image (nearest).
        A class teacher's only."""
        logits = torch.from_numpy(self.logits(rgb))
        logits[..., ~self.keep] = float("-inf")
        ids = self.matrix.argmax(1)[logits.argmax(-1)]
        return F.interpolate(ids[None, None].float(), size=rgb.shape[:2], mode="nearest")[0, 0].to(torch.uint8)


def _record(folder: Path, name: str, spec: TeacherSpec, digest: str) -> dict:
    """The teacher's record in FOLDER/teachers/NAME.json; a different model than the recorded one is an error."""
    path = folder / TEACHER_DIR / f"{name}.json"
    encoding = "RGBA uint8, channel c = 255 p_c" if spec.table is not None else "grey uint8, 255 p(foreground)"
    record = {"teacher": name, **asdict(spec), "sha256": digest, "encoding": encoding}
    if path.is_file():
        recorded = json.loads(path.read_text())
        if recorded.get("sha256") != digest or recorded.get("size") != spec.size:
            raise ValueError(
                f"{path.parent / name} holds targets of another {name} model (sha256 {recorded.get('sha256')}); "
                "delete that folder to remake them"
            )
    return record


_TEACHERS: dict[str, Teacher] = {}


def _init_worker(names: Sequence[str], models_dir: Path) -> None:
    torch.set_num_threads(1)
    for name in names:
        _TEACHERS[name] = Teacher(TEACHERS[name], models_dir)


def _teach_one(job: tuple[Path, Path, tuple[str, ...]]) -> Path:
    """Write every missing target of one image; return the image."""
    image, folder, names = job
    with Image.open(image) as im:
        rgb = np.array(im.convert("RGB"))
    for name in names:
        out = target_path(folder, name, image.parent.name, image.stem)
        data = encode(_TEACHERS[name].probabilities(rgb))
        atomic_write(out, lambda tmp, data=data: tmp.write_bytes(data))
    return image


def teach(folders: Sequence[Path], models_dir: Path = MODELS_DIR, workers: int = 1, limit: int | None = None) -> dict:
    """Make the missing targets of every teacher for every image of ``folders``; return the records written."""
    digests = {name: sha256(models_dir / spec.file) for name, spec in TEACHERS.items()}
    records = {}
    jobs = []
    for folder in folders:
        for name, spec in TEACHERS.items():
            records[(folder, name)] = _record(folder, name, spec, digests[name])
        for split in SPLITS:
            for image in image_files(folder / "images" / split)[:limit]:
                missing = tuple(n for n in TEACHERS if not target_path(folder, n, split, image.stem).is_file())
                if missing:
                    jobs.append((image, folder, missing))
    print(f"teach: {len(jobs)} image(s) to do in {len(folders)} folder(s)", file=sys.stderr, flush=True)
    if workers <= 1:
        _init_worker(tuple(TEACHERS), models_dir)
        done = map(_teach_one, jobs)
        for _ in progress(done, "teach", total=len(jobs), unit="images"):
            pass
    else:
        with multiprocessing.Pool(workers, _init_worker, (tuple(TEACHERS), models_dir)) as pool:
            for _ in progress(pool.imap_unordered(_teach_one, jobs, chunksize=4), "teach", total=len(jobs)):
                pass
    for (folder, name), record in records.items():
        split_counts = {s: len(list((folder / TEACHER_DIR / name / s).glob("*.png"))) for s in SPLITS}
        record["counts"] = split_counts
        path = folder / TEACHER_DIR / f"{name}.json"
        atomic_write(path, lambda tmp, record=record: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    return {f"{folder.name}/{name}": record for (folder, name), record in records.items()}


def _sources(folder: Path) -> dict[str, str]:
    """{name: raw folder} of the sources a prepared folder was made from (its manifest); none without a manifest."""
    manifest = folder / "manifest.json"
    return json.loads(manifest.read_text()).get("sources", {}) if manifest.is_file() else {}


def _val_labels(folder: Path, split: str) -> tuple[SegmentationFolder, dict[str, tuple[SegmentationFolder, int]]]:
    """The prepared folder's split, and for each of its images the raw source split and index that hold its label,
    where the raw source folder its manifest names exists (labels then read as scoring reads them)."""
    prepared = SegmentationFolder(folder, split)
    raw: dict[str, tuple[SegmentationFolder, int]] = {}
    for name, path in _sources(folder).items():
        if name in UNLABELLED_SOURCES or not (Path(path) / "images" / split).is_dir():
            continue
        data = SegmentationFolder(path, split, scoring=True)
        raw |= {f"{name}__{stem}": (data, i) for i, stem in enumerate(data.stems)}
    return prepared, raw


def score(folders: Sequence[Path], split: str = "val") -> dict:
    """{fusion rule: {folder name: scores}}: each rule's argmax against the folder's labels (task.metrics), with
    partial labels scored apart as train.evaluate does. The labels are the raw sources' at their own size where the
    folder's manifest names them and they exist (the targets are resized to them, bilinear, as a model's logits
    are), so the teachers are scored on the pixels train.evaluate scores a checkpoint on; else the prepared labels.
    Each image and its two targets are read once for all rules."""
    results: dict[str, dict] = {fusion: {} for fusion in FUSIONS}
    for folder in folders:
        data, raw = _val_labels(folder, split)
        confusion = torch.zeros(len(FUSIONS), NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
        partial = torch.zeros(len(FUSIONS), len(PARTIAL_IDS), NUM_CLASSES, dtype=torch.int64)
        for index, stem in enumerate(data.stems):
            source, i = raw.get(stem, (data, index))
            _, mask = source[i]
            targets = read_targets(folder, split, stem)
            if targets["ade20k"].shape[-2:] != mask.shape:
                targets = {n: F.interpolate(t[None], size=mask.shape, mode="bilinear")[0] for n, t in targets.items()}
            for k, rule in enumerate(FUSIONS):
                pred = fuse(rule, targets).argmax(0)
                confusion[k] += confusion_matrix(pred, mask, NUM_CLASSES, IGNORE_INDEX)
                partial[k] += partial_counts(pred, mask, NUM_CLASSES)
        for k, fusion in enumerate(FUSIONS):
            result = scores(confusion[k], list(CLASS_NAMES), partial[k])
            results[fusion][folder.name] = {
                **result,
                "confusion": confusion[k].tolist(),
                "partial": partial[k].tolist(),
                "sources": sorted(_sources(folder)),
            }
    return results


def print_scores(results: dict) -> None:
    """One line per rule and folder: mIoU and per-class IoU (counting partial-label pixels predicted outside their
    set as false positives, as the cat IoU of feral-cats is)."""
    print(f"{'fusion':<18} {'folder':<16} mIoU    " + "  ".join(f"{c:<13}" for c in CLASS_NAMES))
    for fusion, per_folder in results.items():
        for name, r in per_folder.items():
            ious = r.get("per_class_iou_with_partial") or r["per_class_iou"]
            cells = "  ".join(f"{'n/a' if v is None else f'{v:.3f}':<13}" for v in ious.values())
            print(f"{fusion:<18} {name:<16} {r['miou']:.3f}   {cells}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.teach", description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="prepared dataset folders")
    parser.add_argument("--models", type=Path, default=MODELS_DIR, help="folder of the teachers' .tflite files")
    parser.add_argument("--workers", type=int, default=1, help="processes, one thread each")
    parser.add_argument("--limit", type=int, help="only the first N images of each split (quick runs)")
    parser.add_argument("--score", action="store_true", help="score the fusion rules on val instead of teaching")
    parser.add_argument("--json", type=Path, help="with --score: also write the scores to this file")
    args = parser.parse_args(argv)
    try:
        if not args.score:
            teach(args.data, args.models, args.workers, args.limit)
            return
        results = score(args.data)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print_scores(results)
    if args.json is not None:
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(results, indent=1) + "\n"))


if __name__ == "__main__":
    main()
