"""Robustness to natural corruptions, measured as SegFormer's paper measures it (Xie et al., NeurIPS 2021, Section
4.4, Table 5): a checkpoint and the two CNN teachers it learnt from, on the same val photos under the paper's 16
corruptions (task.corruptions.GROUPS, from Hendrycks & Dietterich, ICLR 2019) at severities 1, 3 and 5.

    python -m experiments.robustness measure [--models CHECKPOINT|teachers ...] [--samples 0 1] [--workers 2]
    python -m experiments.robustness measure --full --workers N   # every val photo at every severity: hours
    python -m experiments.robustness report      # the figure and the tables of relative robustness

The corruptions are made by their reference code, ``imagecorruptions`` (Michaelis et al., 2019), in its maintained
fork ``imagecorruptions-imaug`` 1.1.5 (requirements-robust.txt): upstream 1.1.2 fails on numpy 2 and scikit-image
0.19 or later (glass blur, Gaussian blur and fog raise errors). Each photo is brought to the working size first (the
shipped checkpoint's: shorter side 384, longer side at most 1024; task.corruptions.working_image), where the page
corrupts it too, and corrupted with the seed of that photo (its source and name), once for every model, so all see
the same pixels. A checkpoint segments through segformer.Segmenter, as the app does; the teachers through
train.teach.Teacher, fused by the shipped checkpoint's rule (max-person). Predictions are scored at the label's size
against the raw val labels, read as train.evaluate reads them, the logits (the teachers' probabilities) upsampled to
it. Two conditions are uncorrupted: "original", the photo at its own size, scored exactly as train.evaluate scores
it; and "clean", the photo at the working size, the reference of every corrupted condition, as it differs from
them by the corruption alone (the teachers resample their input, so the working size alone moves about 5% of
their pixels on an MSRC-v2 photo; the checkpoint's under 1%).

The sample: from each val split of SOURCES (the three labelled sources and the people's and pets' photos), in name
order, PER_SOURCE photos evenly spread; sample k takes every other slot from slot k, so samples 0 and 1 are disjoint
and alike, and their spread is the noise of a sample this small. Each run writes
results/robustness/MODEL-sampleK.json (MODEL-full.json with --full): per condition ("original", "clean",
"NAME/SEVERITY") and source, the confusion matrix and partial counts, and train.standing's figures of them.
"""

import argparse
import json
import multiprocessing
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from experiments.robustness_figure import RESULTS, report
from segformer import Segmenter
from segformer.checkpoint import DEFAULT_CHECKPOINT, atomic_write, read_metadata, working_short_side
from segformer.images import MAX_SIDE
from segformer.predict import as_images, class_argmax, upsample_logits, working_logits
from task.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, PERSON_ANIMAL
from task.corruptions import GROUPS, SEVERITIES, working_image
from task.metrics import confusion_matrix, partial_counts, scores
from train.data import SegmentationFolder
from train.paths import DATASETS_DIR, MODELS_DIR, repo_relative
from train.progress import progress
from train.standing import PEOPLE, PETS
from train.standing import SOURCES as POOLED
from train.teach import TEACHERS, Teacher
from train.teacher_targets import FUSION_TEACHERS, fuse

SOURCES = (*POOLED, PEOPLE, PETS)
CORRUPTIONS = tuple(name for names in GROUPS.values() for name in names)
PER_SOURCE = 4  # photos per source and sample
SAMPLES = (0, 1)
BENCH_SEVERITIES = (1, 3, 5)
TEACHERS_MODEL = "teachers"  # the --models entry of the fused teachers
FUSION = "max-person"
PACKAGE = "imagecorruptions-imaug"
#: The working scale the photos are corrupted at: the shipped checkpoint's.
SHORT_SIDE = working_short_side(read_metadata(DEFAULT_CHECKPOINT))
#: What a model is for the benchmark: (RGB uint8 (H, W, 3), label size) -> class ids (label size).
Predict = Callable[[np.ndarray, tuple[int, int]], torch.Tensor]


def sample_indices(count: int, per_source: int, sample: int, samples: int = len(SAMPLES)) -> list[int]:
    """``per_source`` of ``count`` indices, spread evenly: slot j of sample k is slot j * samples + k of
    ``per_source * samples`` equal slots, so the samples interleave and never share an index."""
    slots = per_source * samples
    if not 0 <= sample < samples or slots > count:
        raise ValueError(f"cannot take sample {sample} of {samples} with {per_source} of {count} images each")
    return [int((j * samples + sample + 0.5) * count / slots) for j in range(per_source)]


def image_seed(source: str, stem: str) -> int:
    """The seed of one photo's corruptions: the same for every model, run and corruption."""
    return zlib.crc32(f"{source}/{stem}".encode())


def reference_corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``image`` (H, W, 3) uint8 corrupted by the reference package (imagecorruptions), its draws seeded by ``seed``:
    numpy's global generator as the package draws from it, and the seed its impulse noise and glass blur take."""
    from imagecorruptions import corrupt  # requirements-robust.txt: the experiment's dependency only

    np.random.seed(seed)
    seeded = {"seed": seed} if name in ("impulse_noise", "glass_blur") else {}
    return corrupt(image, severity, corruption_name=name, **seeded)


def checkpoint_predictor(spec: str) -> Predict:
    """A checkpoint's class ids as segformer.Segmenter makes them (its normalisation and working scale, the network's
    logits of ``working_logits``), the logits upsampled to the label's size: for a photo at the label's size exactly
    ``Segmenter.logits`` and so train.evaluate; for one at the working size, one upsampling from the network's
    output, as for the photo itself."""
    seg = Segmenter.from_checkpoint(spec)

    @torch.inference_mode()
    def predict(pixels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        logits = working_logits(seg.model, as_images(pixels)[None], seg.mean, seg.std, seg.max_side, seg.short_side)
        return class_argmax(upsample_logits(logits.float(), size))[0]

    return predict


def teachers_predictor(models_dir: Path = MODELS_DIR) -> Predict:
    """The teachers' probabilities (train.teach.Teacher) that FUSION reads, resized to the label's size as
    train.teach --score resizes them and fused by FUSION: its argmax."""
    teachers = {name: Teacher(TEACHERS[name], models_dir) for name in FUSION_TEACHERS[FUSION]}

    def predict(pixels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        probs = {name: teacher.probabilities(pixels) for name, teacher in teachers.items()}
        if tuple(probs["ade20k"].shape[-2:]) != size:
            probs = {name: F.interpolate(p[None], size=size, mode="bilinear")[0] for name, p in probs.items()}
        return fuse(FUSION, probs).argmax(0)

    return predict


def model_name(spec: str) -> str:
    return f"teachers-{FUSION}" if spec == TEACHERS_MODEL else Path(spec).with_suffix("").name


def conditions(corruptions: Sequence[str], severities: Sequence[int]) -> list[str]:
    return ["original", "clean", *(f"{name}/{severity}" for name in corruptions for severity in severities)]


_STATE: dict = {}


def _init_worker(models: Sequence[str], corruptions: Sequence[str], severities: Sequence[int]) -> None:
    torch.set_num_threads(1)
    _STATE["models"] = {
        model_name(spec): teachers_predictor() if spec == TEACHERS_MODEL else checkpoint_predictor(spec)
        for spec in models
    }
    _STATE["conditions"] = conditions(corruptions, severities)
    _STATE["data"] = {source: SegmentationFolder(DATASETS_DIR / source, "val", scoring=True) for source in SOURCES}


def measure_image(job: tuple[str, int]) -> tuple[str, dict, dict[str, float]]:
    """One val photo under every condition, segmented by every model: (source, {model: {condition: (confusion,
    partial counts)}}, seconds spent corrupting and in each model)."""
    source, index = job
    data = _STATE["data"][source]
    image, mask = data[index]
    photo = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    small = working_image(photo, SHORT_SIDE, MAX_SIDE)
    seed = image_seed(source, data.stems[index])
    counts: dict[str, dict] = {name: {} for name in _STATE["models"]}
    seconds = dict.fromkeys(["corrupt", *_STATE["models"]], 0.0)
    for condition in _STATE["conditions"]:
        started = time.perf_counter()
        if condition == "original":
            pixels = photo
        elif condition == "clean":
            pixels = small
        else:
            name, severity = condition.split("/")
            pixels = reference_corrupt(small, name, int(severity), seed)
        seconds["corrupt"] += time.perf_counter() - started
        for name, predict in _STATE["models"].items():
            started = time.perf_counter()
            pred = predict(pixels, tuple(mask.shape))
            counts[name][condition] = (
                confusion_matrix(pred, mask, NUM_CLASSES, IGNORE_INDEX).numpy(),
                partial_counts(pred, mask, NUM_CLASSES).numpy(),
            )
            seconds[name] += time.perf_counter() - started
    return source, counts, seconds


def figures(per_source: dict[str, dict]) -> dict[str, float | None]:
    """train.standing's figures of one condition: the three labelled sources' pooled mIoU, and the person/animal IoU
    of the people's and the pets' photos (the pixels around the one person or pet counted as not person/animal)."""
    pooled = [per_source[s] for s in POOLED if s in per_source]
    result: dict[str, float | None] = {"3-source mIoU": None, "people IoU": None, "pets IoU": None}
    if pooled:
        confusion = sum(np.asarray(r["confusion"]) for r in pooled)
        result["3-source mIoU"] = scores(torch.as_tensor(confusion), list(CLASS_NAMES))["miou"]
    for column, source in (("people IoU", PEOPLE), ("pets IoU", PETS)):
        if source in per_source:
            r = per_source[source]
            iou = scores(torch.as_tensor(r["confusion"]), list(CLASS_NAMES), torch.as_tensor(r["partial"]))
            result[column] = iou["per_class_iou_with_partial"][CLASS_NAMES[PERSON_ANIMAL]]
    return result


def measure(
    models: Sequence[str],
    images: dict[str, list[int]],
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = BENCH_SEVERITIES,
    workers: int = 2,
) -> tuple[dict[str, dict], dict[str, float]]:
    """{model: {condition: {source: {"confusion", "partial"}}}} summed over ``images`` ({source: val indices}), and
    the seconds spent (corrupting, each model; summed over the workers)."""
    jobs = [(source, index) for source, indices in images.items() for index in indices]
    totals: dict[str, dict] = {model_name(spec): {} for spec in models}
    seconds: dict[str, float] = {}

    def add_up(done: Iterable[tuple[str, dict, dict[str, float]]]) -> None:
        for source, counts, spent in progress(done, "robustness", total=len(jobs), unit="images"):
            for name, per_condition in counts.items():
                for condition, (confusion, partial) in per_condition.items():
                    entry = totals[name].setdefault(condition, {}).setdefault(source, {"confusion": 0, "partial": 0})
                    entry["confusion"] = entry["confusion"] + confusion
                    entry["partial"] = entry["partial"] + partial
            for key, value in spent.items():
                seconds[key] = seconds.get(key, 0.0) + value

    init = (list(models), list(corruptions), list(severities))
    if workers <= 1:
        _init_worker(*init)
        add_up(map(measure_image, jobs))
    else:
        with multiprocessing.Pool(workers, _init_worker, init) as pool:
            add_up(pool.imap_unordered(measure_image, jobs))
    return totals, seconds


def report_json(name: str, spec: str, per_condition: dict, run: dict) -> dict:
    """One model's JSON: the run's settings, per condition the counts by source (as lists) and their figures."""
    counts = {
        condition: {s: {k: v.tolist() for k, v in entry.items()} for s, entry in by_source.items()}
        for condition, by_source in per_condition.items()
    }
    teachers = spec == TEACHERS_MODEL
    return {
        "model": name,
        "checkpoint": None if teachers else repo_relative(spec),
        # Which weights the checkpoint held: the run its metadata says they were exported from.
        "exported_from": None if teachers else read_metadata(spec).get("exported_from"),
        "fusion": FUSION if teachers else None,
        **run,
        "figures": {condition: figures(by_source) for condition, by_source in counts.items()},
        "counts": counts,
    }


def package_version() -> str:
    """The reference package and its version; ImportError, saying what to install, where it is missing."""
    try:
        return f"{PACKAGE} {version(PACKAGE)}"
    except PackageNotFoundError:
        raise ImportError(f"{PACKAGE} is not installed: pip install -r requirements-robust.txt") from None


def run_measure(args: argparse.Namespace) -> list[Path]:
    """Measure every sample asked for and write one JSON per model and sample; return the files."""
    code = package_version()
    data = {source: SegmentationFolder(DATASETS_DIR / source, "val", scoring=True) for source in SOURCES}
    severities = SEVERITIES if args.full else args.severities
    samples = [None] if args.full else args.samples
    written = []
    for sample in samples:
        if sample is None:
            images = {source: list(range(len(d))) for source, d in data.items()}
        else:
            images = {source: sample_indices(len(d), args.images, sample) for source, d in data.items()}
        started = time.perf_counter()
        totals, seconds = measure(args.models, images, args.corruptions, severities, args.workers)
        run = {
            "corruption_code": code,
            "sample": "full" if sample is None else sample,
            "per_source": None if sample is None else args.images,
            "severities": list(severities),
            "corruptions": list(args.corruptions),
            "working_short_side": SHORT_SIDE,
            "max_side": MAX_SIDE,
            "images": {source: [data[source].stems[i] for i in indices] for source, indices in images.items()},
            "wall_seconds": round(time.perf_counter() - started, 1),
            "workers": args.workers,
            "cpu_seconds": {key: round(value, 1) for key, value in seconds.items()},
        }
        for spec in args.models:
            name = model_name(spec)
            path = args.out / f"{name}-{'full' if sample is None else f'sample{sample}'}.json"
            result = report_json(name, spec, totals[name], run)
            atomic_write(path, lambda tmp, result=result: tmp.write_text(json.dumps(result) + "\n"))
            written.append(path)
            clean = {k: None if v is None else round(v, 3) for k, v in result["figures"]["clean"].items()}
            print(f"{name}, sample {run['sample']}: clean {clean} -> {path}", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.robustness", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("measure", "report"))
    parser.add_argument(
        "--models",
        nargs="+",
        default=[str(DEFAULT_CHECKPOINT), TEACHERS_MODEL],
        help=f"checkpoints, and '{TEACHERS_MODEL}' for the fused teachers (default: the shipped checkpoint and them)",
    )
    parser.add_argument("--samples", type=int, nargs="+", default=list(SAMPLES), choices=SAMPLES)
    parser.add_argument("--images", type=int, default=PER_SOURCE, help="photos per source and sample")
    parser.add_argument("--corruptions", nargs="+", default=list(CORRUPTIONS), choices=CORRUPTIONS)
    parser.add_argument("--severities", type=int, nargs="+", default=list(BENCH_SEVERITIES), choices=SEVERITIES)
    parser.add_argument("--full", action="store_true", help="every val photo at severities 1-5 (no sample)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON results")
    args = parser.parse_args(argv)
    if args.action == "report":
        report(args.out)
        return
    try:
        run_measure(args)
    except (FileNotFoundError, ValueError, ImportError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
