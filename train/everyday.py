"""Everyday photos on val: the share of each vehicle or animal photo that a model, or the fused teachers, call so.

    python -m train.everyday --checkpoint checkpoints/segformer-b0-4class [--data ../shared/datasets/everyday-photos]
        [--working-short-side S]
    python -m train.everyday --teachers data/everyday-384          (the stored targets, one figure per fusion rule)

everyday-photos has no labels, only the ImageNet class of each photo in its file name (``<wnid>_<class>.jpg``): what
the photo is of. ImageNet-1k's first 398 classes by wnid (up to the pufferfish, n02655020) are animals, and
VEHICLE_CLASSES lists the classes whose subject is a vehicle of the task (cars, buses, trucks, trains, boats, aircraft,
bicycles, motorbikes). For each such photo the figure is the share of its pixels predicted as that task class,
averaged over the photos of the class. It is no IoU (the subject rarely fills the photo, and nothing says where it
is), but it moves with what the val splits of the street scenes cannot show: the everyday vehicles and animals that
people photograph. A checkpoint is run as the app runs it (its working scale); the teachers' targets are stored at
the prepared folder's size.
"""

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segformer import Segmenter
from segformer.checkpoint import checked_working_short_side
from task.classes import CLASS_NAMES, PERSON_ANIMAL, VEHICLE
from train.paths import DATASETS_DIR
from train.prepare import image_files
from train.teacher_targets import FUSIONS, fuse, read_targets

#: wnids below this one (ImageNet-1k's class 398, "abacus") are the 398 animal classes.
FIRST_NON_ANIMAL_WNID = "n02666196"

#: ImageNet-1k classes (as spelled in the file names) whose subject is a vehicle of the task.
VEHICLE_CLASSES = frozenset(
    {
        *("aircraft_carrier", "airliner", "airship", "ambulance", "amphibian", "beach_wagon", "bicycle-built-for-two"),
        *("bullet_train", "cab", "canoe", "catamaran", "container_ship", "convertible", "electric_locomotive"),
        *("fireboat", "fire_engine", "forklift", "freight_car", "garbage_truck", "go-kart", "golfcart", "gondola"),
        *("half_track", "jeep", "lifeboat", "limousine", "liner", "minibus", "minivan", "Model_T", "moped"),
        *("motor_scooter", "mountain_bike", "moving_van", "passenger_car", "pickup", "pirate", "police_van", "racer"),
        *("recreational_vehicle", "school_bus", "schooner", "snowmobile", "snowplow", "space_shuttle", "speedboat"),
        *("sports_car", "steam_locomotive", "streetcar", "submarine", "tank", "tow_truck", "tractor", "trailer_truck"),
        *("tricycle", "trimaran", "trolleybus", "unicycle", "warplane", "yawl"),
    }
)


def photo_class(stem: str) -> int | None:
    """The task class an everyday photo is of (PERSON_ANIMAL or VEHICLE), from its ``<wnid>_<class>`` name; None for
    the other photos (objects, food, scenes, plants)."""
    wnid, _, name = stem.partition("_")
    if wnid < FIRST_NON_ANIMAL_WNID:
        return PERSON_ANIMAL
    return VEHICLE if name in VEHICLE_CLASSES else None


def shares(photos: Iterable[tuple[str, torch.Tensor]]) -> dict[str, dict[str, float | int]]:
    """{class name: {"photos": n, "share": mean share}} from (stem, predicted class map) pairs."""
    found: dict[int, list[float]] = {PERSON_ANIMAL: [], VEHICLE: []}
    for stem, pred in photos:
        cls = photo_class(stem)
        if cls is not None:
            found[cls].append((pred == cls).float().mean().item())
    return {CLASS_NAMES[c]: {"photos": len(v), "share": float(np.mean(v)) if v else 0.0} for c, v in found.items()}


def _scored(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if photo_class(p.stem) is not None]


def checkpoint_shares(checkpoint: str, folder: Path, split: str = "val", short_side: int | None = None) -> dict:
    """The figure of a checkpoint on a folder of everyday photos, each segmented as the app does, at ``short_side``
    when given (default: the checkpoint's working scale)."""
    seg = Segmenter.from_checkpoint(checkpoint)
    if short_side is not None:
        seg = replace(seg, short_side=checked_working_short_side(short_side))

    def predicted(path: Path) -> torch.Tensor:
        with Image.open(path) as im:
            return seg(im.convert("RGB"))

    return shares((p.stem, predicted(p)) for p in _scored(image_files(folder / "images" / split)))


def teacher_shares(folder: Path, split: str = "val") -> dict[str, dict]:
    """{fusion rule: figure} of the teachers' targets stored in a prepared folder of everyday photos."""
    paths = _scored(image_files(folder / "images" / split))
    # A prepared folder names its images <source>__<stem>.
    targets = [(p.stem.split("__", 1)[-1], read_targets(folder, split, p.stem)) for p in paths]
    return {rule: shares((stem, fuse(rule, t).argmax(0)) for stem, t in targets) for rule in FUSIONS}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.everyday", description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="checkpoint stem or its .safetensors/.json file")
    which.add_argument("--teachers", type=Path, help="a prepared folder of everyday photos with teacher targets")
    parser.add_argument("--data", type=Path, default=DATASETS_DIR / "everyday-photos", help="with --checkpoint")
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--working-short-side", type=int, help="with --checkpoint: the scale (default: the checkpoint's own)"
    )
    args = parser.parse_args(argv)
    try:
        if args.checkpoint is not None:
            figure = checkpoint_shares(args.checkpoint, args.data, args.split, args.working_short_side)
            result = {"checkpoint": args.checkpoint, "split": args.split, **figure}
        else:
            result = {"teachers": args.teachers.name, "split": args.split, **teacher_shares(args.teachers, args.split)}
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
