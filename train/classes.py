"""The project's 4-class task and the mapping of every source dataset's classes onto it.

This module is the one place that knows the task classes. Source labels are mapped by class
*name* (not id), so a source is described by its own ``classes.txt`` (or ADE20K's
``objectInfo150.csv``) plus the per-source table below.
"""

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("background", "plant", "person/animal", "vehicle")
NUM_CLASSES = len(CLASS_NAMES)
BACKGROUND, PLANT, PERSON_ANIMAL, VEHICLE = range(NUM_CLASSES)
IGNORE_INDEX = 255

#: RGB colour per task class, indexed like CLASS_NAMES.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (64, 64, 64),  # background: dark grey
    (60, 180, 75),  # plant: green
    (230, 25, 75),  # person/animal: red
    (0, 130, 200),  # vehicle: blue
)

# Source class name -> task id. Names not listed map to BACKGROUND; ids missing from a
# source's class list map to IGNORE_INDEX.
#
# Borderline decisions:
# * ADE20K id 0 ("other", i.e. not annotated) is absent from objectInfo150.csv, so it maps
#   to IGNORE_INDEX like every id without a name.
# * "field" (ADE20K, SIFT Flow) -> background. It is a land-use class (farmland, meadow,
#   often bare or ploughed soil), both sources label lawns/grass separately as "grass", and
#   the ADE20K list of plant classes given for the task does not include it; keeping it
#   background everywhere keeps the sources consistent with each other.
# * CamVid "bicyclist" -> IGNORE_INDEX. The label covers the rider *and* the bicycle, which
#   the task splits into person/animal and vehicle (ADE20K and MSRC label them separately),
#   so any single task class would be wrong for part of its pixels. Ignoring it neither
#   teaches nor scores the ambiguous pixels.
# * MSRC "body" and "face" are person parts -> person/animal.
# * ADE20K "pot" (flowerpot), "apparel", "sculpture" and "plaything" stay background: they
#   are objects, not the plants/people/animals themselves.
_IGNORE_NAMES = ("unlabeled", "unlabelled", "void")
SOURCE_TABLES: dict[str, dict[str, int]] = {
    "ade20k": {
        "tree": PLANT,
        "grass": PLANT,
        "plant": PLANT,
        "flower": PLANT,
        "palm": PLANT,
        "person": PERSON_ANIMAL,
        "animal": PERSON_ANIMAL,
        "car": VEHICLE,
        "bus": VEHICLE,
        "truck": VEHICLE,
        "van": VEHICLE,
        "boat": VEHICLE,
        "ship": VEHICLE,
        "airplane": VEHICLE,
        "bicycle": VEHICLE,
        "minibike": VEHICLE,
    },
    "sift-flow": {
        "unlabeled": IGNORE_INDEX,
        "tree": PLANT,
        "grass": PLANT,
        "plant": PLANT,
        "person": PERSON_ANIMAL,
        "bird": PERSON_ANIMAL,
        "cow": PERSON_ANIMAL,
        "car": VEHICLE,
        "bus": VEHICLE,
        "boat": VEHICLE,
    },
    "msrc-v2": {
        "void": IGNORE_INDEX,
        "tree": PLANT,
        "grass": PLANT,
        "flower": PLANT,
        "body": PERSON_ANIMAL,
        "face": PERSON_ANIMAL,
        "bird": PERSON_ANIMAL,
        "cow": PERSON_ANIMAL,
        "horse": PERSON_ANIMAL,
        "sheep": PERSON_ANIMAL,
        "cat": PERSON_ANIMAL,
        "dog": PERSON_ANIMAL,
        "car": VEHICLE,
        "boat": VEHICLE,
        "aeroplane": VEHICLE,
        "bicycle": VEHICLE,
    },
    "camvid": {
        "unlabelled": IGNORE_INDEX,
        "tree": PLANT,
        "pedestrian": PERSON_ANIMAL,
        "bicyclist": IGNORE_INDEX,
        "car": VEHICLE,
    },
}

#: Table for folders of unknown origin: every source's names (they never disagree).
GENERIC_TABLE: dict[str, int] = {name: IGNORE_INDEX for name in _IGNORE_NAMES} | {
    name: task_id for table in SOURCE_TABLES.values() for name, task_id in table.items()
}

#: Sources whose images are filtered with keep_image (see there).
FILTERED_SOURCES = frozenset({"ade20k"})


def canonical_name(name: str) -> str:
    """Normalise a class name: first of ';'-separated synonyms, stripped, lower case."""
    return name.split(";")[0].strip().lower()


def is_task_classes(names_by_id: Mapping[int, str]) -> bool:
    """True when the names are exactly the task classes (a prepared dataset)."""
    return sorted(canonical_name(n) for n in names_by_id.values()) == sorted(CLASS_NAMES)


def lookup_table(names_by_id: Mapping[int, str], source: str | None = None) -> np.ndarray:
    """Return a uint8 array of 256 entries mapping raw label ids to task ids.

    ``source`` selects the table in SOURCE_TABLES; ``None`` uses GENERIC_TABLE. A class list
    that is exactly the task classes maps each name to itself whatever the source. Listed
    names missing from the table map to background, ids not in ``names_by_id`` to
    IGNORE_INDEX.
    """
    if is_task_classes(names_by_id):
        table = {name: i for i, name in enumerate(CLASS_NAMES)}
    elif source is None:
        table = GENERIC_TABLE
    elif source in SOURCE_TABLES:
        table = SOURCE_TABLES[source]
    else:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCE_TABLES)}")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for class_id, name in names_by_id.items():
        if not 0 <= class_id <= 255:
            raise ValueError(f"class id {class_id} ({name!r}) does not fit an 8-bit label")
        lut[class_id] = table.get(canonical_name(name), BACKGROUND)
    return lut


def read_classes_txt(path: Path) -> dict[int, str]:
    """Read a ``classes.txt`` with one ``ID NAME`` per line into ``{id: name}``."""
    names: dict[int, str] = {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{line_no}: expected 'ID NAME', got {line!r}")
        names[int(parts[0])] = parts[1].strip()
    return names


def parse_ade_object_info(text: str) -> dict[int, str]:
    """Parse the text of ADE20K's ``objectInfo150.csv`` into ``{idx: 'name;synonym;...'}``.

    Ids are 1..150; id 0 (not annotated) has no row and so maps to IGNORE_INDEX.
    """
    return {int(row["Idx"]): row["Name"] for row in csv.DictReader(io.StringIO(text))}


def read_ade_object_info(csv_path: Path) -> dict[int, str]:
    """Read ADE20K's ``objectInfo150.csv`` file (see parse_ade_object_info)."""
    return parse_ade_object_info(Path(csv_path).read_text())


def task_classes_txt() -> str:
    """The ``classes.txt`` content of a prepared dataset."""
    return "".join(f"{i} {name}\n" for i, name in enumerate(CLASS_NAMES))


def keep_image(mask: np.ndarray) -> bool:
    """Keep an image only if over 1% of its labelled pixels are not background.

    ``mask`` holds task ids (already mapped). Applied to the sources in FILTERED_SOURCES
    only: ADE20K is dominated by indoor scenes without any foreground task class. The small
    sources are kept whole: their val sets are small and used as they are, and in their train
    sets the few background-only scenes are useful negatives.
    """
    labelled = mask != IGNORE_INDEX
    n_labelled = int(np.count_nonzero(labelled))
    n_foreground = int(np.count_nonzero(labelled & (mask != BACKGROUND)))
    return n_labelled > 0 and n_foreground > 0.01 * n_labelled
