"""Build a training-ready dataset folder from ADE20K, SIFT Flow, MSRC-v2 and CamVid.

    python -m train.prepare --out data/prepared --short-side 512 \\
        --sources ade20k=PATH sift-flow=PATH msrc-v2=PATH camvid=PATH [--download] [--limit N]

The output has the layout SegmentationFolder reads::

    DIR/classes.txt                              the 4 task classes
    DIR/images/<split>/<source>__<stem>.jpg      short side resized to N (never upsampled), JPEG q95
    DIR/labels/<split>/<source>__<stem>.png      8-bit task ids 0..3, 255 = ignore
    DIR/manifest.json                            counts, skipped files, class pixel counts, settings

Images whose short side is already <= N keep their size: upsampling adds no information, and
evaluation happens at the label's own resolution. Unreadable images and missing or
size-mismatched labels are reported and skipped. Files are written to a temporary name and
renamed, so an interrupted run leaves no half-written file.
"""

import argparse
import http.client
import io
import json
import multiprocessing
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from segformer.checkpoint import atomic_write
from task.classes import (
    CLASS_NAMES,
    FILTERED_SOURCES,
    IGNORE_INDEX,
    PARTIAL_IDS,
    SOURCE_TABLES,
    UNLABELLED_SOURCES,
    keep_image,
    lookup_table,
    parse_ade_object_info,
    partial_name,
    read_ade_object_info,
    read_classes_txt,
    task_classes_txt,
)
from train.progress import progress

ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
ADE20K_DIR = "ADEChallengeData2016"
ADE20K_SPLITS = {"training": "train", "validation": "val"}
SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_QUALITY = 95


class PrepareError(Exception):
    """A source or output that cannot be prepared; the message names it (the command line prints it)."""


@dataclass(frozen=True)
class Item:
    """One image/label pair to convert; paths are members of ``archive`` when it is set."""

    source: str
    split: str
    stem: str
    image: str
    label: str | None
    archive: str | None = None


@dataclass
class Result:
    """Outcome of one Item: ``status`` is 'written', 'filtered' or 'skipped'."""

    item: Item
    status: str
    reason: str = ""
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))


# ---------------------------------------------------------------------------- listing sources


def image_files(folder: Path) -> list[Path]:
    """The images (IMAGE_SUFFIXES) directly in ``folder``, sorted; none when it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def list_folder_source(name: str, root: Path, limit: int | None) -> tuple[list[Item], np.ndarray]:
    """List a source in the shared layout (classes.txt, images/<split>/, labels/<split>/).

    A source in UNLABELLED_SOURCES has only images/<split>/: its items have no label, and every pixel is ignored.
    """
    classes_txt = root / "classes.txt"
    unlabelled = name in UNLABELLED_SOURCES
    if not root.is_dir():
        layout = "images/<split>/" if unlabelled else "classes.txt, images/<split>/, labels/<split>/"
        raise PrepareError(f"{name} folder not found: {root} (expected {layout})")
    if not unlabelled and not classes_txt.is_file():
        raise PrepareError(f"{name}: missing {classes_txt}")
    items = []
    for split in SPLITS:
        for image in image_files(root / "images" / split)[:limit]:
            label = root / "labels" / split / f"{image.stem}.png"
            items.append(Item(name, split, image.stem, str(image), str(label) if label.is_file() else None))
    if not items:
        raise PrepareError(f"{name}: no images in {root / 'images' / 'train'} or {root / 'images' / 'val'}")
    if unlabelled:
        return items, np.full(256, IGNORE_INDEX, dtype=np.uint8)
    return items, lookup_table(read_classes_txt(classes_txt), name)


def _ade20k_location(path: Path) -> tuple[Path, Path | None]:
    """Return (ADEChallengeData2016 folder or zip, archive or None) for a user-given path."""
    candidates = [path, path / ADE20K_DIR, path / f"{ADE20K_DIR}.zip"]
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix == ".zip":
            return candidate, candidate
        if (candidate / "objectInfo150.csv").is_file():
            return candidate, None
    raise PrepareError(
        f"ade20k not found at {path}: expected an {ADE20K_DIR} folder (with objectInfo150.csv) "
        f"or {ADE20K_DIR}.zip; use --download to fetch it"
    )


def list_ade20k(path: Path, limit: int | None) -> tuple[list[Item], np.ndarray]:
    """List ADE20K from an ADEChallengeData2016 folder or zip (training -> train, validation -> val)."""
    root, archive = _ade20k_location(path)
    if archive is None:
        members = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        names = read_ade_object_info(root / "objectInfo150.csv")
        prefix = ""
    else:
        try:
            with zipfile.ZipFile(archive) as zf:
                members = zf.namelist()
                csv_member = next((m for m in members if m.endswith("objectInfo150.csv")), None)
                if csv_member is None:
                    raise PrepareError(f"ade20k: no objectInfo150.csv in {archive}")
                names = parse_ade_object_info(zf.read(csv_member).decode())
        except zipfile.BadZipFile as e:
            raise PrepareError(f"ade20k: {archive} is not a valid zip ({e})") from None
        prefix = csv_member.removesuffix("objectInfo150.csv")

    def location(member: str) -> str:
        return member if archive else str(root / member)

    member_set = set(members)
    items = []
    for ade_split, split in ADE20K_SPLITS.items():
        image_dir = f"{prefix}images/{ade_split}/"
        images = sorted(m for m in members if m.startswith(image_dir) and m.endswith(".jpg"))[:limit]
        for image in images:
            stem = image.removeprefix(image_dir).removesuffix(".jpg")
            label = f"{prefix}annotations/{ade_split}/{stem}.png"
            items.append(
                Item(
                    "ade20k",
                    split,
                    stem,
                    location(image),
                    location(label) if label in member_set else None,
                    str(archive) if archive else None,
                )
            )
    if not items:
        raise PrepareError(f"ade20k: no images under {prefix}images/training or validation in {root}")
    return items, lookup_table(names, "ade20k")


# ---------------------------------------------------------------------------- downloading


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, resuming a previous ``.part`` file.

    The size is checked against the server's declared length, and the result must be a zip.
    Network failures raise PrepareError with a one-line message, never a traceback.
    """
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    total = None
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status != 206:  # the server ignored the range: start over
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with (
                open(part, "ab" if offset else "wb") as f,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not sys.stderr.isatty(),
                ) as bar,
            ):
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and e.headers.get("Content-Range") == f"bytes */{offset}"):
            raise PrepareError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise PrepareError(
            f"cannot download {url}: {reason} (offline? rerun to resume, or pass --sources ade20k=PATH to a local copy)"
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise PrepareError(f"download of {url} incomplete ({size} of {total} bytes); rerun to resume")
    if not zipfile.is_zipfile(part):
        part.unlink()
        raise PrepareError(f"{url} did not yield a zip file; deleted {part}")
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------- converting


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size with the short side ``short_side``, aspect kept; unchanged if already no larger."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    if width <= height:
        return short_side, round(height * scale)
    return round(width * scale), short_side


class Converter:
    """Converts Items into the output folder; one per process (it caches open zip archives)."""

    def __init__(
        self, out: Path, short_side: int, luts: dict[str, np.ndarray], jpeg_quality: int | None = None
    ) -> None:
        self.out = out
        self.short_side = short_side
        self.luts = luts
        self.jpeg_quality = jpeg_quality
        self.archives: dict[str, zipfile.ZipFile] = {}

    def _read(self, path: str, archive: str | None) -> io.BytesIO:
        if archive is None:
            return io.BytesIO(Path(path).read_bytes())
        if archive not in self.archives:
            self.archives[archive] = zipfile.ZipFile(archive)
        return io.BytesIO(self.archives[archive].read(path))

    def __call__(self, item: Item) -> Result:
        unlabelled = item.source in UNLABELLED_SOURCES
        if item.label is None and not unlabelled:
            return Result(item, "skipped", "missing label")
        try:
            image_bytes = self._read(item.image, item.archive)
            with Image.open(image_bytes) as im:
                is_rgb_jpeg = im.format == "JPEG" and im.mode == "RGB"
                image = im.convert("RGB")
        except Exception as e:  # any decoding failure means a corrupt image: skip it
            return Result(item, "skipped", f"unreadable image ({e})")
        if unlabelled:
            raw = np.zeros((image.height, image.width), dtype=np.uint8)  # the source's lut maps every id to ignore
        else:
            raw = self._read_label(item)
            if isinstance(raw, str):
                return Result(item, "skipped", raw)
        if raw.shape != (image.height, image.width):
            return Result(
                item,
                "skipped",
                f"label size {raw.shape[1]}x{raw.shape[0]} != image size {image.width}x{image.height}",
            )
        return self._write(item, image, image_bytes, is_rgb_jpeg, self.luts[item.source][raw])

    def _read_label(self, item: Item) -> np.ndarray | str:
        """The label's raw ids, or why it can't be used."""
        assert item.label is not None
        try:
            with Image.open(self._read(item.label, item.archive)) as lab:
                if lab.mode not in ("L", "P"):
                    return f"label is not 8-bit class ids (mode {lab.mode})"
                return np.asarray(lab)
        except Exception as e:  # as above, for the image
            return f"unreadable label ({e})"

    def _write(
        self, item: Item, image: Image.Image, image_bytes: io.BytesIO, is_rgb_jpeg: bool, mask: np.ndarray
    ) -> Result:
        """Resize the image and its task-id mask to the short side and write both (label first)."""
        if item.source in FILTERED_SOURCES and not keep_image(mask):
            return Result(item, "filtered")
        size = resized_size(image.width, image.height, self.short_side)
        label = Image.fromarray(mask)
        if size == image.size and is_rgb_jpeg and self.jpeg_quality is None:  # no second generation of JPEG loss
            jpeg = image_bytes.getvalue()
        else:
            if size != image.size:
                image = image.resize(size, Image.Resampling.BILINEAR)
                label = label.resize(size, Image.Resampling.NEAREST)
            jpeg = _encode(image, "JPEG", quality=self.jpeg_quality or JPEG_QUALITY)
        name = f"{item.source}__{item.stem}"
        # The label goes first: an interrupted run can leave a label without image, never the reverse.
        _write_bytes(self.out / "labels" / item.split / f"{name}.png", _encode(label, "PNG", optimize=True))
        _write_bytes(self.out / "images" / item.split / f"{name}.jpg", jpeg)
        return Result(item, "written", pixels=np.bincount(np.asarray(label).ravel(), minlength=256))

    def close(self) -> None:
        """Close the cached archives."""
        for archive in self.archives.values():
            archive.close()


_CONVERTER: Converter | None = None


def _init_worker(out: Path, short_side: int, luts: dict[str, np.ndarray], jpeg_quality: int | None) -> None:
    global _CONVERTER
    _CONVERTER = Converter(out, short_side, luts, jpeg_quality)


def _convert_in_worker(item: Item) -> Result:
    assert _CONVERTER is not None
    return _CONVERTER(item)


def _convert_all(
    items: Sequence[Item],
    out: Path,
    short_side: int,
    luts: dict[str, np.ndarray],
    workers: int,
    jpeg_quality: int | None,
) -> Iterable[Result]:
    if workers <= 1:
        converter = Converter(out, short_side, luts, jpeg_quality)
        try:
            yield from map(converter, items)
        finally:
            converter.close()
        return
    with multiprocessing.Pool(workers, _init_worker, (out, short_side, luts, jpeg_quality)) as pool:
        yield from pool.imap_unordered(_convert_in_worker, items, chunksize=8)


# ---------------------------------------------------------------------------- main


def _prepare_output(out: Path, overwrite: bool) -> None:
    existing = [out / name for name in ("images", "labels", "manifest.json") if (out / name).exists()]
    if existing and not overwrite:
        raise PrepareError(f"{out} already holds a dataset ({existing[0].name}); pass --overwrite")
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for kind in ("images", "labels"):
        for split in SPLITS:
            (out / kind / split).mkdir(parents=True, exist_ok=True)


def prepare(
    out: Path,
    short_side: int,
    sources: dict[str, Path],
    limit: int | None = None,
    workers: int = 2,
    overwrite: bool = False,
    jpeg_quality: int | None = None,
) -> dict:
    """Convert ``sources`` ({name: path}) into ``out``; return the manifest (also written).

    Images already at their output size are copied byte for byte unless ``jpeg_quality`` is given: then every
    image is re-encoded at that quality, which keeps the folder small enough to copy to another machine cheaply.
    """
    if not sources:
        raise PrepareError("no sources given (use --sources NAME=PATH ... or --download)")
    items: list[Item] = []
    luts: dict[str, np.ndarray] = {}
    for name, path in sources.items():
        listed, luts[name] = list_ade20k(path, limit) if name == "ade20k" else list_folder_source(name, path, limit)
        items.extend(listed)
    _prepare_output(out, overwrite)

    counts = {name: dict.fromkeys(SPLITS, 0) for name in sources}
    filtered = {name: dict.fromkeys(SPLITS, 0) for name in sources}
    pixels = {name: {split: np.zeros(256, dtype=np.int64) for split in SPLITS} for name in sources}
    skipped = []
    results = _convert_all(items, out, short_side, luts, workers, jpeg_quality)
    for result in progress(results, "prepare", total=len(items), unit="images"):
        item = result.item
        if result.status == "skipped":
            skipped.append({"source": item.source, "split": item.split, "file": item.image, "reason": result.reason})
            print(f"skipped {item.image}: {result.reason}", file=sys.stderr)
        elif result.status == "filtered":
            filtered[item.source][item.split] += 1
        else:
            counts[item.source][item.split] += 1
            pixels[item.source][item.split] += result.pixels

    manifest = {
        "short_side": short_side,
        "jpeg_quality": jpeg_quality or JPEG_QUALITY,
        "reencoded_all": jpeg_quality is not None,
        "classes": list(CLASS_NAMES),
        "ignore_index": IGNORE_INDEX,
        "sources": {name: str(path) for name, path in sources.items()},
        "limit": limit,
        "counts": counts,
        "filtered_out": filtered,
        "filter_rule": f"keep_image (> 1% non-background labelled pixels) on {sorted(FILTERED_SOURCES)}",
        "skipped": skipped,
        "class_pixels": {
            name: {split: _class_pixels(p) for split, p in by_split.items()} for name, by_split in pixels.items()
        },
        "class_frequency": {split: _class_frequency(sum(p[split] for p in pixels.values())) for split in SPLITS},
    }
    _write_bytes(out / "classes.txt", task_classes_txt().encode())
    _write_bytes(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _class_pixels(pixels: np.ndarray) -> dict[str, int]:
    """Pixels of each task class, then of each partial label present (named like 'background|plant'), ignore."""
    named = {name: int(pixels[i]) for i, name in enumerate(CLASS_NAMES)}
    partial = {partial_name(v): int(pixels[v]) for v in PARTIAL_IDS if pixels[v]}
    return named | partial | {"ignore": int(pixels[IGNORE_INDEX])}


def _class_frequency(pixels: np.ndarray) -> dict[str, float]:
    """Share of each class among labelled pixels (0 when there are none)."""
    labelled = int(pixels[: len(CLASS_NAMES)].sum())
    return {name: round(int(pixels[i]) / labelled, 6) if labelled else 0.0 for i, name in enumerate(CLASS_NAMES)}


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 95:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality from 1 to 95, got {text}")
    return value


def _parse_source(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    names = [*SOURCE_TABLES, *sorted(UNLABELLED_SOURCES)]
    if not sep or name not in names:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH with NAME in {', '.join(names)}: {text!r}")
    return name, Path(path).expanduser()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument(
        "--short-side", type=_positive_int, default=512, help="resize the short side to N (no upsampling)"
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        type=_parse_source,
        default=[],
        metavar="NAME=PATH",
        help=f"sources to convert, NAME in {', '.join(SOURCE_TABLES)}",
    )
    parser.add_argument("--download", action="store_true", help="download ADE20K and use it as the ade20k source")
    parser.add_argument(
        "--download-dir", type=Path, default=Path("data/downloads"), help="where --download keeps the zip"
    )
    parser.add_argument("--ade20k-url", default=ADE20K_URL, help="where --download fetches ADE20K from")
    parser.add_argument("--limit", type=_positive_int, help="at most N images per source and split (quick runs, tests)")
    parser.add_argument("--workers", type=_positive_int, default=2, help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    parser.add_argument(
        "--jpeg-quality",
        type=_quality,
        help=f"re-encode every image at this JPEG quality (default: copy where possible, else {JPEG_QUALITY})",
    )
    args = parser.parse_args(argv)

    sources = dict(args.sources)
    if len(sources) != len(args.sources):
        parser.error("a source is given twice")
    if args.download and "ade20k" in sources:
        parser.error("--download and --sources ade20k=PATH are exclusive")
    try:
        if args.download:
            sources["ade20k"] = download(args.ade20k_url, args.download_dir / f"{ADE20K_DIR}.zip")
        manifest = prepare(
            args.out, args.short_side, sources, args.limit, args.workers, args.overwrite, args.jpeg_quality
        )
    except PrepareError as err:
        sys.exit(f"prepare: {err}")
    for name, by_split in manifest["counts"].items():
        print(f"{name}: " + ", ".join(f"{split} {n}" for split, n in by_split.items()))
    print(f"skipped {len(manifest['skipped'])}; wrote {args.out}")


if __name__ == "__main__":
    main()
