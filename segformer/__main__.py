"""Command line: segment image files and folders with a checkpoint, outside the app.

    python -m segformer segment INPUT... --out DIR [--checkpoint PATH|hf://ORG/REPO/NAME] [--overlay] [--overwrite]
        [--max-side N]

Each INPUT is an image file or a folder, searched recursively for the files Pillow can open. Every image is decoded
and predicted as the app does it (``segformer.images.read_image``: EXIF rotation, mode conversions, size checks;
then the checkpoint's ``segformer.Segmenter``: its normalisation, its working scale if it has one, at most N pixels
on the longer side, the logits upsampled to the image's size before the argmax) and written under DIR at its path
relative to the folder it was found in (a file given directly: its name), with atomic writes:

* ``NAME.png``, the class-id mask at the image's own size (8-bit grey; pixel values are class ids);
* with ``--overlay``, ``NAME.overlay.jpg``: the image blended half-way toward the class colours of the checkpoint's
  palette, as the app shows it.

A rerun keeps the outputs that exist (unless ``--overwrite``). Files that cannot be used are reported and skipped;
the exit status is then 1.
"""

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from segformer.allocator import keep_freed_memory
from segformer.checkpoint import DEFAULT_CHECKPOINT, atomic_write
from segformer.images import MAX_SIDE, MIN_SIDE, InputError, blend, read_image
from segformer.segmenter import Segmenter

#: How far the overlay moves each pixel toward its class colour (the app's default opacity).
OVERLAY_OPACITY = 0.5


@dataclass(frozen=True)
class Job:
    """One image to segment and the outputs it gets."""

    image: Path
    name: Path  # the image's path relative to the output folder
    mask: Path
    overlay: Path | None

    @property
    def outputs(self) -> list[Path]:
        return [self.mask] if self.overlay is None else [self.mask, self.overlay]


def image_files(inputs: Sequence[Path], out: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to ``out``) of each file given and each image file under each folder given.

    Files inside ``out`` are left out, so that a rerun does not take the masks of the last run for images.
    """
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    out = out.resolve()
    found = []
    for path in inputs:
        if path.is_file():
            found.append((path, Path(path.name)))
            continue
        for file in sorted(path.rglob("*")):
            if file.is_file() and file.suffix.lower() in readable and out not in file.resolve().parents:
                found.append((file, file.relative_to(path)))
    return found


def plan(inputs: Sequence[Path], out: Path, overlay: bool) -> list[Job]:
    """The jobs for ``inputs``; ValueError when an input is missing or is ``out``, or when an output would replace
    an input or another image's output."""
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    if any(p.is_dir() and p.resolve() == out.resolve() for p in inputs):
        raise ValueError(f"the output folder {out} is an input folder: give another (a sub-folder will do)")
    found = image_files(inputs, out)
    owners = {image.resolve(): image for image, _ in found}  # every path already taken, and by which image
    jobs = []
    for image, name in found:
        overlay_path = out / name.with_suffix(".overlay.jpg") if overlay else None
        job = Job(image, name, out / name.with_suffix(".png"), overlay_path)
        for output in job.outputs:
            owner = owners.setdefault(output.resolve(), image)
            if owner is not image or output.resolve() == image.resolve():
                raise ValueError(f"{image} would be written as {output}, already taken by {owner} or its output")
        jobs.append(job)
    return jobs


def write_image(path: Path, pixels: np.ndarray, **save: object) -> None:
    """Atomically write ``pixels`` as an image file (PNG, or the format given in ``save``)."""
    atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, **{"format": "PNG", **save}))


def working_side(text: str) -> int:
    """--max-side: an integer no smaller than the smallest side the network accepts."""
    value = int(text)
    if value < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_SIDE}")
    return value


def segment(args: argparse.Namespace) -> int:
    """Run ``segment``: 0 when every image was segmented or skipped, 1 when some failed, 2 when none could start."""
    try:
        jobs = plan(args.inputs, args.out, args.overlay)
        segmenter = Segmenter.from_checkpoint(args.checkpoint, max_side=args.max_side)
    except (OSError, ValueError) as err:  # OSError: a missing file, or a Hub checkpoint that cannot be fetched
        print(f"error: {err}", file=sys.stderr)
        return 2

    def segment_image(job: Job) -> str:
        rgb = read_image(job.image, args.max_side)
        mask = segmenter(rgb).numpy()
        write_image(job.mask, mask)
        if job.overlay is not None:
            write_image(job.overlay, blend(rgb, mask, segmenter.palette, OVERLAY_OPACITY), format="JPEG", quality=90)
        return f"{rgb.shape[1]}x{rgb.shape[0]}, written"

    interactive = sys.stderr.isatty()
    counts = {"segmented": 0, "skipped (outputs exist)": 0, "failed": 0}
    start = time.perf_counter()
    for index, job in enumerate(tqdm(jobs, unit="image", disable=not interactive), 1):
        try:
            if not args.overwrite and all(p.exists() for p in job.outputs):
                status, outcome = "outputs exist, skipped", "skipped (outputs exist)"
            else:
                status, outcome = segment_image(job), "segmented"
        except InputError as err:
            status, outcome = f"failed: {err}", "failed"
            tqdm.write(f"error: {job.image}: {err}", file=sys.stderr)
        counts[outcome] += 1
        if not interactive:
            print(f"[{index}/{len(jobs)}] {job.name}: {status}", flush=True)
    seconds = time.perf_counter() - start
    done = counts["segmented"]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    print(f"{len(jobs)} images: {summary}; {seconds:.1f} s, {done / max(seconds, 1e-9):.2f} images/s segmented")
    return 1 if counts["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segformer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    seg = commands.add_parser("segment", help="segment image files and folders", description=__doc__)
    seg.formatter_class = argparse.RawDescriptionHelpFormatter
    seg.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image files or folders (recursive)")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="checkpoint stem, or hf://ORG/REPO/NAME (default: %(default)s)",
    )
    seg.add_argument("--overlay", action="store_true", help="also write NAME.overlay.jpg, the coloured overlay")
    seg.add_argument("--overwrite", action="store_true", help="rewrite outputs that exist (default: skip them)")
    seg.add_argument(
        "--max-side",
        type=working_side,
        default=MAX_SIDE,
        help="longer side of the working size the network sees (default: %(default)s, as the app)",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()
    return segment(args)


if __name__ == "__main__":
    sys.exit(main())
