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

#: A pixel that a source labels only as "one of these task classes" (a partial label) is stored as
#: PARTIAL_BASE + the set's bit mask, bit c for class c: "not a cat" = {background, plant, vehicle} is
#: 16 + 0b1011 = 27. Training gives such pixels the marginal loss -log sum_{c in S} p_c
#: (train.losses.partial_cross_entropy); evaluation scores only single-class pixels.
PARTIAL_BASE = 16
Label = int | frozenset[int]


def label_id(label: Label) -> int:
    """The 8-bit label value of a task class or of a set of admissible task classes.

    A one-class set is that class; the set of all classes says nothing and is IGNORE_INDEX.
    """
    if isinstance(label, int):
        return label
    if not label or not label <= set(range(NUM_CLASSES)):
        raise ValueError(f"not a set of task classes: {sorted(label)}")
    if len(label) == 1:
        return next(iter(label))
    if len(label) == NUM_CLASSES:
        return IGNORE_INDEX
    return PARTIAL_BASE + sum(1 << c for c in label)


def admissible_classes(value: int) -> frozenset[int]:
    """The task classes a label value admits: one class, a partial set, or none (ignore)."""
    if value < NUM_CLASSES:
        return frozenset({value})
    if PARTIAL_BASE < value < PARTIAL_BASE + (1 << NUM_CLASSES) - 1:
        return frozenset(c for c in range(NUM_CLASSES) if (value - PARTIAL_BASE) >> c & 1)
    return frozenset()


def admissible_table() -> np.ndarray:
    """(256, NUM_CLASSES) bool: row v marks the classes label value v admits (all False for ignore)."""
    table = np.zeros((256, NUM_CLASSES), dtype=bool)
    for value in range(256):
        table[value, sorted(admissible_classes(value))] = True
    return table


def partial_name(value: int) -> str:
    """Name of a partial label value in a prepared ``classes.txt``: its classes joined by '|'."""
    return "|".join(CLASS_NAMES[c] for c in sorted(admissible_classes(value)))


#: Every partial label value (sets of 2 to NUM_CLASSES - 1 classes).
PARTIAL_IDS: tuple[int, ...] = tuple(
    v for v in range(PARTIAL_BASE, PARTIAL_BASE + (1 << NUM_CLASSES)) if 1 < len(admissible_classes(v)) < NUM_CLASSES
)

# Source class name -> task id, or the set of task ids the name admits (a partial label). Names not listed
# map to BACKGROUND; ids missing from a source's class list map to IGNORE_INDEX.
#
# Borderline decisions:
# * ADE20K id 0 ("other", i.e. not annotated) is absent from objectInfo150.csv, so it maps
#   to IGNORE_INDEX like every id without a name.
# * "field" (ADE20K, SIFT Flow) -> {background, plant}, a partial label. It is a land-use class:
#   meadow and crops, but also bare or ploughed soil, and both sources label lawns separately as
#   "grass". It is never a person, animal or vehicle, which is what the partial label teaches.
# * CamVid "bicyclist" -> {person/animal, vehicle}. The label covers the rider *and* the bicycle,
#   which the task splits (ADE20K and MSRC label them separately), so any single task class would
#   be wrong for part of its pixels; the partial label says "one of the two, not background".
# * feral-cats "not a cat" -> {background, plant, vehicle}: the source labels cats only, and its
#   label 0 covers plants, pavement and cars alike. It is taken as "not person/animal", which
#   holds for these street and garden photos of cats (a rare person or dog would be mislabelled).
# * DAVIS 2016 annotates one object per video; its 0 ("unlabeled") means "not annotated", never background, so it
#   is ignored (a teacher's targets cover those pixels). Its "bicyclist" (rider and bicycle, motorbike or cart) is
#   {person/animal, vehicle} like CamVid's; "person with gear" (a kite-surfer or paraglider with board, harness and
#   lines) is {person/animal, background}.
# * ccp-people parses one person per photo into 58 items (skin, hair, garments, shoes, jewellery): each is that person,
#   person/animal. Its 0 ("null") is everything else, passers-by included, so it is "not annotated" (ignored, the
#   teachers' targets cover it), never background. What the person carries (bag, purse, wallet) is not a person in
#   ADE20K's or COCO's sense and is ignored too: neither the person nor reliably background under the strap.
# * oxford-pets keeps the Oxford-IIIT trimaps: 1 the pet (person/animal); 2 "not the pet" includes people holding it,
#   so it is not annotated (ignored, the teachers' targets cover it); 3 the border between the two is ignored.
# * everyday-photos has no labels at all (UNLABELLED_SOURCES): every pixel is ignored, and only a teacher's
#   targets teach from it.
# * MSRC "body" and "face" are person parts -> person/animal.
# * ADE20K "pot" (flowerpot), "apparel", "sculpture" and "plaything" stay background: they
#   are objects, not the plants/people/animals themselves.
_IGNORE_NAMES = ("unlabeled", "unlabelled", "void")
_FIELD = frozenset({BACKGROUND, PLANT})
SOURCE_TABLES: dict[str, dict[str, Label]] = {
    "ade20k": {
        "tree": PLANT,
        "grass": PLANT,
        "plant": PLANT,
        "flower": PLANT,
        "palm": PLANT,
        "field": _FIELD,
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
        "field": _FIELD,
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
        "bicyclist": frozenset({PERSON_ANIMAL, VEHICLE}),
        "car": VEHICLE,
    },
    "davis-2016": {
        "unlabeled": IGNORE_INDEX,
        "person": PERSON_ANIMAL,
        "bird": PERSON_ANIMAL,
        "animal": PERSON_ANIMAL,
        "cow": PERSON_ANIMAL,
        "dog": PERSON_ANIMAL,
        "horse": PERSON_ANIMAL,
        "car": VEHICLE,
        "bicyclist": frozenset({PERSON_ANIMAL, VEHICLE}),
        "person with gear": frozenset({PERSON_ANIMAL, BACKGROUND}),
    },
    # The VOC teacher's output channels (train.teach): its "pottedplant" is the plant with its pot.
    "pascal-voc": {
        "aeroplane": VEHICLE,
        "bicycle": VEHICLE,
        "bird": PERSON_ANIMAL,
        "boat": VEHICLE,
        "bus": VEHICLE,
        "car": VEHICLE,
        "cat": PERSON_ANIMAL,
        "cow": PERSON_ANIMAL,
        "dog": PERSON_ANIMAL,
        "horse": PERSON_ANIMAL,
        "motorbike": VEHICLE,
        "person": PERSON_ANIMAL,
        "pottedplant": PLANT,
        "sheep": PERSON_ANIMAL,
        "train": VEHICLE,
    },
    "feral-cats": {
        "not a cat": frozenset({BACKGROUND, PLANT, VEHICLE}),
        "cat": PERSON_ANIMAL,
    },
    "ccp-people": {"null": IGNORE_INDEX, "bag": IGNORE_INDEX, "purse": IGNORE_INDEX, "wallet": IGNORE_INDEX},
    "oxford-pets": {"unused": IGNORE_INDEX, "pet": PERSON_ANIMAL, "not the pet": IGNORE_INDEX, "border": IGNORE_INDEX},
}

#: How scoring reads labels that training ignores (lookup_table's ``scoring``): ccp-people's "null" and oxford-pets'
#: "not the pet" are mostly the scene around the one annotated person or pet, so a person/animal predicted there is
#: scored as a false positive, as feral-cats' "not a cat" is. Passers-by and people holding a pet are then counted
#: against every model alike; training keeps them unannotated (the teachers' targets teach there).
SCORING_TABLES: dict[str, dict[str, Label]] = {
    "ccp-people": {"null": frozenset({BACKGROUND, PLANT, VEHICLE})},
    "oxford-pets": {"not the pet": frozenset({BACKGROUND, PLANT, VEHICLE})},
}

#: Sources whose listed names that are missing from their table map to this class rather than BACKGROUND: every item
#: of a ccp-people parse (skin, hair, each garment) is part of the one person the photo is of.
SOURCE_DEFAULTS: dict[str, Label] = {"ccp-people": PERSON_ANIMAL}

#: Sources whose names mean something only inside that source ("not the pet", a carried "bag"): not generic.
_SOURCE_SPECIFIC = frozenset({"ccp-people", "oxford-pets"})

#: Table for folders of unknown origin: every other source's names (they never disagree).
GENERIC_TABLE: dict[str, Label] = {name: IGNORE_INDEX for name in _IGNORE_NAMES} | {
    name: task_id
    for source, table in SOURCE_TABLES.items()
    if source not in _SOURCE_SPECIFIC
    for name, task_id in table.items()
}

#: Sources without labels or classes.txt: every pixel of theirs is IGNORE_INDEX (teacher targets only).
UNLABELLED_SOURCES = frozenset({"everyday-photos"})

#: Sources whose images are filtered with keep_image (see there).
FILTERED_SOURCES = frozenset({"ade20k"})


def canonical_name(name: str) -> str:
    """Normalise a class name: first of ';'-separated synonyms, stripped, lower case."""
    return name.split(";")[0].strip().lower()


#: Names of a prepared folder's ``classes.txt``: the task classes, then the partial labels.
_PREPARED_NAMES: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)} | {
    partial_name(v): v for v in PARTIAL_IDS
}


def is_task_classes(names_by_id: Mapping[int, str]) -> bool:
    """True when the names are the task classes, possibly with partial labels (a prepared dataset)."""
    names = {canonical_name(n) for n in names_by_id.values()}
    return set(CLASS_NAMES) <= names <= set(_PREPARED_NAMES)


def lookup_table(names_by_id: Mapping[int, str], source: str | None = None, scoring: bool = False) -> np.ndarray:
    """Return a uint8 array of 256 entries mapping raw label ids to task ids or partial label values.

    ``source`` selects the table in SOURCE_TABLES; ``None`` uses GENERIC_TABLE. A class list
    that is exactly the task classes maps each name to itself whatever the source. Listed
    names missing from the table map to background (or the source's SOURCE_DEFAULTS class),
    ids not in ``names_by_id`` to IGNORE_INDEX. With ``scoring`` the source's SCORING_TABLES entries
    replace its training table's.
    """
    table: Mapping[str, Label]
    default: Label = BACKGROUND
    if is_task_classes(names_by_id):
        table = _PREPARED_NAMES
    elif source is None:
        table = GENERIC_TABLE
    elif source in SOURCE_TABLES:
        table = SOURCE_TABLES[source] | (SCORING_TABLES.get(source, {}) if scoring else {})
        default = SOURCE_DEFAULTS.get(source, BACKGROUND)
    else:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCE_TABLES)}")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for class_id, name in names_by_id.items():
        if not 0 <= class_id <= 255:
            raise ValueError(f"class id {class_id} ({name!r}) does not fit an 8-bit label")
        lut[class_id] = label_id(table.get(canonical_name(name), default))
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
    """The ``classes.txt`` content of a prepared dataset: task classes, then partial labels."""
    return "".join(f"{value} {name}\n" for name, value in _PREPARED_NAMES.items())


def keep_image(mask: np.ndarray) -> bool:
    """Keep an image only if over 1% of its labelled pixels are not background.

    ``mask`` holds task ids (already mapped). Applied to the sources in FILTERED_SOURCES
    only: ADE20K is dominated by indoor scenes without any foreground task class. The small
    sources are kept whole: their val sets are small and used as they are, and in their train
    sets the few background-only scenes are useful negatives.
    """
    labelled = mask != IGNORE_INDEX
    n_labelled = int(np.count_nonzero(labelled))
    n_foreground = int(np.count_nonzero(labelled & (mask != BACKGROUND) & (mask != label_id(_FIELD))))
    return n_labelled > 0 and n_foreground > 0.01 * n_labelled
