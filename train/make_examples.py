"""Build the app's bundled examples from the shared datasets (small enough to commit and ship in a Space).

    python -m train.make_examples [--datasets ../shared/datasets] [--out examples] [--per-source 7]

Writes::

    OUT/photos/<source>__<stem>.jpg            a few real validation photos, copied as they are (tab 1, 4)
    OUT/validation/classes.txt                 the task classes and partial labels (SegmentationFolder reads it)
    OUT/validation/images/val/<source>__<stem>.jpg   short side <= 256, JPEG
    OUT/validation/labels/val/<source>__<stem>.png   task ids 0..3, partial labels, 255 = ignore; palette PNG
    OUT/validation/manifest.json               where each example comes from
    OUT/DATASETS.md                            each source's provenance and licence (the app's About tab)

Validation examples are picked deterministically: per source, in turn for plant, person/animal and
vehicle, the image that has at least 2% of that class, then the most task classes present, then the
largest share of that class, among those not within len/(count+1) positions (in file order) of an image
already picked, so that near-identical video frames (CamVid) are not picked twice. A source labelled for
one class only (feral-cats: cat or "not a cat", a partial label; ccp-people's one person and oxford-pets' one
pet, their surroundings read as scoring reads them) contributes a few images at evenly spaced ranks of that
class's share, from small to large. ADE20K contributes its three samples. The photos are the first pick of
PHOTO_SOURCES, the ADE20K samples, and the first everyday photo of a vehicle (train.everyday) in file order.
"""

import argparse
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segformer.images import palette_png
from task.classes import (
    BACKGROUND,
    CLASS_NAMES,
    IGNORE_INDEX,
    PALETTE,
    PERSON_ANIMAL,
    VEHICLE,
    lookup_table,
    read_ade_object_info,
    task_classes_txt,
)
from train.data import SegmentationFolder
from train.everyday import photo_class
from train.prepare import image_files, resized_size

FOLDER_SOURCES = ("sift-flow", "msrc-v2", "camvid")
#: Folder sources with fewer examples: DAVIS 2016 labels one object per video (the rest is not annotated), and its
#: val split is three videos.
FEW_SOURCES = {"davis-2016": 3}
#: Folder sources that label one task class only (everything else a partial label or unannotated), that class,
#: and how many examples each gives.
ONE_CLASS_SOURCES = {
    "feral-cats": (PERSON_ANIMAL, 4),
    "ccp-people": (PERSON_ANIMAL, 2),
    "oxford-pets": (PERSON_ANIMAL, 2),
}
ADE_DIR = Path("ade20k-samples/ADEChallengeData2016")
SHORT_SIDE = 256
JPEG_QUALITY = 90
#: Validation images copied whole into photos/ besides the ADE20K samples: the first pick of these sources.
PHOTO_SOURCES = ("camvid", "msrc-v2", "ccp-people", "oxford-pets")
EVERYDAY = "everyday-photos"


def licence_notes(readme: str, sources: Sequence[str]) -> str:
    """Markdown for the app's users: the provenance and licence of each of ``sources``, from the datasets README's
    tables (those with source, provenance and license columns) and the origin it gives for the ADE20K samples."""
    rows = []
    for block in re.findall(r"(?:^\|.*\n?)+", readme, flags=re.MULTILINE):
        header, _, *lines = [
            [cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.split("\n") if line
        ]
        if not {"source", "provenance", "license"} <= set(header):
            continue  # another kind of table (DAVIS' class ids)
        columns = [header.index(name) for name in ("source", "provenance", "license")]
        rows += [[line[c] for c in columns] for line in lines if line[columns[0]] in sources]
    ade = re.search(r"## ade20k-samples.*?From the ([^.]*?) \(([^)]*)\)\.", readme, flags=re.DOTALL)
    if ade is None:
        raise ValueError(
            "the datasets README does not say where the ADE20K samples come from ('From the ... (licence).')"
        )
    rows.append(["ade20k", f"ADE20K scene-parsing validation pairs, from the {' '.join(ade[1].split())}", ade[2]])
    table = "\n".join(f"| {' | '.join(row)} |" for row in [["source", "provenance", "licence"], ["---"] * 3, *rows])
    return (
        f"Each bundled example is named `<source>__<original name>`; its source's provenance and licence:\n\n{table}\n"
    )


def class_shares(mask: np.ndarray) -> np.ndarray:
    """Share of each task class among the labelled pixels of ``mask`` (zeros when none is labelled)."""
    counts = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
    return counts / max(int(counts.sum()), 1)


def pick(shares: Sequence[np.ndarray], count: int) -> list[int]:
    """Indices of ``count`` examples, taking the foreground classes in turn (see the module docstring)."""
    foreground = [c for c in range(len(CLASS_NAMES)) if c != BACKGROUND]
    gap = len(shares) // (count + 1)
    chosen: list[int] = []
    for turn in range(min(count, len(shares))):
        cls = foreground[turn % len(foreground)]
        rest = [i for i in range(len(shares)) if all(abs(i - j) > gap for j in chosen)]
        rest = rest or [i for i in range(len(shares)) if i not in chosen]
        chosen.append(
            max(rest, key=lambda i: (shares[i][cls] >= 0.02, int((shares[i] >= 0.01).sum()), shares[i][cls], -i))
        )
    return chosen


def pick_by_share(shares: Sequence[float], count: int) -> list[int]:
    """Indices of ``count`` examples at evenly spaced ranks of ``shares``, smallest first (ties in file order)."""
    order = np.argsort(shares, kind="stable")
    return [int(order[round((k + 1) * (len(order) - 1) / (count + 1))]) for k in range(count)]


def write_pair(image: Image.Image, mask: np.ndarray, out: Path, name: str) -> tuple[int, int]:
    """Save the image (JPEG) and mask (PNG) with the short side at most SHORT_SIDE; return the saved size."""
    size = resized_size(image.width, image.height, SHORT_SIDE)
    label = palette_png(mask, np.asarray(PALETTE, dtype=np.uint8))
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
        label = label.resize(size, Image.Resampling.NEAREST)
    image.save(out / "images" / "val" / f"{name}.jpg", quality=JPEG_QUALITY, optimize=True)
    label.save(out / "labels" / "val" / f"{name}.png", optimize=True)
    return size


def ade_pairs(root: Path) -> list[tuple[Path, Image.Image, np.ndarray]]:
    """The ADE20K sample pairs: (image path, RGB image, mask of task ids)."""
    lut = lookup_table(read_ade_object_info(root / "objectInfo150.csv"), "ade20k")
    pairs = []
    for path in sorted((root / "images" / "validation").glob("*.jpg")):
        with Image.open(path) as im, Image.open(root / "annotations" / "validation" / f"{path.stem}.png") as lab:
            pairs.append((path, im.convert("RGB"), lut[np.asarray(lab)]))
    return pairs


def make_examples(datasets: Path, out: Path, per_source: int) -> list[dict]:
    """Rebuild ``out`` from ``datasets``; return the manifest entries of the validation examples."""
    for sub in ("photos", "validation"):
        shutil.rmtree(out / sub, ignore_errors=True)
    validation = out / "validation"
    for kind in ("images", "labels"):
        (validation / kind / "val").mkdir(parents=True)
    (out / "photos").mkdir(parents=True)
    (validation / "classes.txt").write_text(task_classes_txt())

    entries = []

    def add(source: str, path: Path, image: Image.Image, mask: np.ndarray) -> None:
        name = f"{source}__{path.stem}"
        width, height = write_pair(image, mask, validation, name)
        entries.append(
            {"name": name, "source": source, "original": str(path.relative_to(datasets)), "size": [width, height]}
        )

    for source in (*FOLDER_SOURCES, *FEW_SOURCES, *ONE_CLASS_SOURCES):
        folder = SegmentationFolder(datasets / source, "val", scoring=True)
        masks = [folder[i][1].numpy().astype(np.uint8) for i in range(len(folder))]
        if source in ONE_CLASS_SOURCES:
            cls, count = ONE_CLASS_SOURCES[source]
            labelled = [max(np.count_nonzero(m != IGNORE_INDEX), 1) for m in masks]
            shares = [np.count_nonzero(m == cls) / n for m, n in zip(masks, labelled, strict=True)]
            chosen = pick_by_share(shares, count)
        else:
            chosen = pick([class_shares(m) for m in masks], FEW_SOURCES.get(source, per_source))
        for index in chosen:
            with Image.open(folder.image_paths[index]) as im:
                add(source, folder.image_paths[index], im.convert("RGB"), masks[index])
        if source in PHOTO_SOURCES:
            first = folder.image_paths[chosen[0]]
            shutil.copyfile(first, out / "photos" / f"{source}__{first.name}")
    for path, image, mask in ade_pairs(datasets / ADE_DIR):
        add("ade20k", path, image, mask)
        shutil.copyfile(path, out / "photos" / f"ade20k__{path.name}")
    vehicle = next(p for p in image_files(datasets / EVERYDAY / "images" / "val") if photo_class(p.stem) == VEHICLE)
    shutil.copyfile(vehicle, out / "photos" / f"{EVERYDAY}__{vehicle.name}")

    sources = [*dict.fromkeys(entry["source"] for entry in entries), EVERYDAY]
    (out / "DATASETS.md").write_text(licence_notes((datasets / "README.md").read_text(), sources))
    (validation / "manifest.json").write_text(json.dumps({"short_side": SHORT_SIDE, "examples": entries}, indent=1))
    return entries


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m train.make_examples", description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"), help="shared datasets folder")
    parser.add_argument("--out", type=Path, default=Path("examples"), help="output folder")
    parser.add_argument("--per-source", type=int, default=7, help="validation examples per folder source")
    args = parser.parse_args(argv)
    if not (args.datasets / "README.md").is_file():
        raise SystemExit(f"make_examples: {args.datasets} is not the shared datasets folder (no README.md)")
    entries = make_examples(args.datasets, args.out, args.per_source)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {len(entries)} validation examples and photos to {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
