"""Tests of the task classes and the per-source class mappings, on the real class lists."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from task.classes import (
    BACKGROUND,
    CLASS_NAMES,
    GENERIC_TABLE,
    IGNORE_INDEX,
    PALETTE,
    PARTIAL_IDS,
    PERSON_ANIMAL,
    PLANT,
    SOURCE_TABLES,
    VEHICLE,
    admissible_classes,
    admissible_table,
    canonical_name,
    keep_image,
    label_id,
    lookup_table,
    read_ade_object_info,
    read_classes_txt,
    task_classes_txt,
)
from train.paths import DATASETS_DIR as DATASETS

ADE = DATASETS / "ade20k-samples" / "ADEChallengeData2016"
FOLDER_SOURCES = ("sift-flow", "msrc-v2", "camvid", "feral-cats", "davis-2016", "ccp-people", "oxford-pets")
FIELD = label_id(frozenset({BACKGROUND, PLANT}))
RIDER = label_id(frozenset({PERSON_ANIMAL, VEHICLE}))
NOT_A_CAT = label_id(frozenset({BACKGROUND, PLANT, VEHICLE}))


def test_task_constants() -> None:
    assert CLASS_NAMES == ("background", "plant", "person/animal", "vehicle")
    assert IGNORE_INDEX == 255
    assert len(PALETTE) == len(CLASS_NAMES) == len(set(PALETTE))
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)


@pytest.mark.parametrize("source", FOLDER_SOURCES + ("ade20k",))
def test_every_table_name_exists_in_the_source(source: str) -> None:
    if source == "ade20k":
        names = read_ade_object_info(ADE / "objectInfo150.csv")
    else:
        names = read_classes_txt(DATASETS / source / "classes.txt")
    assert set(SOURCE_TABLES[source]) <= {canonical_name(n) for n in names.values()}


@pytest.mark.parametrize(
    ("source", "name", "training", "scoring"),
    [
        ("ccp-people", "skin", PERSON_ANIMAL, PERSON_ANIMAL),
        ("ccp-people", "hair", PERSON_ANIMAL, PERSON_ANIMAL),
        ("ccp-people", "jeans", PERSON_ANIMAL, PERSON_ANIMAL),
        ("ccp-people", "sunglasses", PERSON_ANIMAL, PERSON_ANIMAL),
        ("ccp-people", "bag", IGNORE_INDEX, IGNORE_INDEX),
        ("ccp-people", "purse", IGNORE_INDEX, IGNORE_INDEX),
        ("ccp-people", "null", IGNORE_INDEX, NOT_A_CAT),
        ("oxford-pets", "pet", PERSON_ANIMAL, PERSON_ANIMAL),
        ("oxford-pets", "not the pet", IGNORE_INDEX, NOT_A_CAT),
        ("oxford-pets", "border", IGNORE_INDEX, IGNORE_INDEX),
        ("camvid", "car", VEHICLE, VEHICLE),
    ],
)
def test_one_object_sources_train_on_the_object_and_score_its_surroundings(
    source: str, name: str, training: int, scoring: int
) -> None:
    names = read_classes_txt(DATASETS / source / "classes.txt")
    raw_id = {n: i for i, n in names.items()}[name]
    assert lookup_table(names, source)[raw_id] == training
    assert lookup_table(names, source, scoring=True)[raw_id] == scoring


def test_every_ccp_people_item_but_carried_things_is_the_person() -> None:
    names = read_classes_txt(DATASETS / "ccp-people" / "classes.txt")
    lut = lookup_table(names, "ccp-people")
    carried = {i for i, n in names.items() if n in ("null", "bag", "purse", "wallet")}
    assert len(names) == 59 and len(carried) == 4
    assert all(lut[i] == (IGNORE_INDEX if i in carried else PERSON_ANIMAL) for i in names)


def test_source_tables_agree_on_shared_names() -> None:
    for name, task_id in GENERIC_TABLE.items():
        assert all(table.get(name, task_id) == task_id for table in SOURCE_TABLES.values()), name


def test_ade20k_mapping_on_real_samples() -> None:
    names = read_ade_object_info(ADE / "objectInfo150.csv")
    assert len(names) == 150
    ids = {canonical_name(name): i for i, name in names.items()}
    lut = lookup_table(names, "ade20k")
    expected = {"wall": BACKGROUND, "tree": PLANT, "grass": PLANT, "plant": PLANT, "car": VEHICLE}
    expected |= {"bus": VEHICLE, "van": VEHICLE, "road": BACKGROUND, "field": FIELD}
    assert lut[0] == IGNORE_INDEX
    assert lut[ids["person"]] == lut[ids["animal"]] == PERSON_ANIMAL
    seen = set()
    for label_path in sorted((ADE / "annotations" / "validation").glob("*.png")):
        raw = np.asarray(Image.open(label_path))
        mapped = lut[raw]
        assert np.all(mapped[raw == 0] == IGNORE_INDEX)
        for name, task_id in expected.items():
            pixels = raw == ids[name]
            if pixels.any():
                seen.add(name)
                assert np.all(mapped[pixels] == task_id), (label_path.name, name)
    assert seen == set(expected) - {"field"}  # the samples hold every class checked but field


@pytest.mark.parametrize(
    ("source", "name", "task_id"),
    [
        ("camvid", "car", VEHICLE),
        ("camvid", "unlabelled", IGNORE_INDEX),
        ("camvid", "pedestrian", PERSON_ANIMAL),
        ("camvid", "bicyclist", RIDER),
        ("camvid", "tree", PLANT),
        ("camvid", "road", BACKGROUND),
        ("sift-flow", "tree", PLANT),
        ("sift-flow", "field", FIELD),
        ("sift-flow", "unlabeled", IGNORE_INDEX),
        ("sift-flow", "bus", VEHICLE),
        ("sift-flow", "cow", PERSON_ANIMAL),
        ("msrc-v2", "void", IGNORE_INDEX),
        ("msrc-v2", "cow", PERSON_ANIMAL),
        ("msrc-v2", "face", PERSON_ANIMAL),
        ("msrc-v2", "flower", PLANT),
        ("msrc-v2", "aeroplane", VEHICLE),
        ("msrc-v2", "building", BACKGROUND),
        ("feral-cats", "cat", PERSON_ANIMAL),
        ("feral-cats", "not a cat", NOT_A_CAT),
    ],
)
def test_source_mapping(source: str, name: str, task_id: int) -> None:
    names = read_classes_txt(DATASETS / source / "classes.txt")
    raw_id = {n: i for i, n in names.items()}[name]
    assert lookup_table(names, source)[raw_id] == task_id
    assert lookup_table(names, None)[raw_id] == task_id  # the generic table agrees


def test_lookup_table_edge_cases() -> None:
    lut = lookup_table({0: "void", 1: "tree", 7: "unknown thing"}, "msrc-v2")
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert (lut[0], lut[1], lut[7], lut[2], lut[255]) == (IGNORE_INDEX, PLANT, BACKGROUND, IGNORE_INDEX, IGNORE_INDEX)
    with pytest.raises(ValueError, match="unknown source"):
        lookup_table({0: "tree"}, "pascal")
    with pytest.raises(ValueError, match="8-bit"):
        lookup_table({300: "tree"}, None)


def test_partial_label_values_encode_their_class_sets() -> None:
    assert (FIELD, RIDER, NOT_A_CAT) == (16 + 0b0011, 16 + 0b1100, 16 + 0b1011)
    assert admissible_classes(NOT_A_CAT) == {BACKGROUND, PLANT, VEHICLE}
    assert label_id(frozenset({PLANT})) == PLANT and label_id(frozenset(range(4))) == IGNORE_INDEX
    assert len(PARTIAL_IDS) == 10 and all(label_id(admissible_classes(v)) == v for v in PARTIAL_IDS)
    table = admissible_table()
    assert table[:4].tolist() == np.eye(4, dtype=bool).tolist()
    assert not table[IGNORE_INDEX].any() and table[RIDER].tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="not a set of task classes"):
        label_id(frozenset({4}))


def test_task_class_list_maps_to_itself_by_name(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text(task_classes_txt())
    lut = lookup_table(read_classes_txt(tmp_path / "classes.txt"), "camvid")
    assert list(lut[:4]) == [0, 1, 2, 3] and lut[255] == IGNORE_INDEX
    assert all(lut[v] == v for v in PARTIAL_IDS)  # partial labels of a prepared folder keep their values
    shuffled = {0: "vehicle", 1: "background", 2: "plant", 3: "person/animal"}
    assert list(lookup_table(shuffled, None)[:4]) == [VEHICLE, BACKGROUND, PLANT, PERSON_ANIMAL]


def test_read_classes_txt_rejects_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("0 sky\n\nnot-an-id road\n")
    with pytest.raises(ValueError, match="classes.txt:3"):
        read_classes_txt(path)


def test_keep_image() -> None:
    mask = np.zeros((10, 100), dtype=np.uint8)
    assert not keep_image(mask)  # all background
    mask[0, :10] = VEHICLE  # exactly 1% foreground: not enough
    assert not keep_image(mask)
    mask[0, 10] = PLANT
    assert keep_image(mask)
    ignored = np.full((10, 10), IGNORE_INDEX, dtype=np.uint8)
    assert not keep_image(ignored)  # nothing labelled
    ignored[0, :2] = (BACKGROUND, PERSON_ANIMAL)  # ignore pixels do not count
    assert keep_image(ignored)
    field = np.full((10, 10), FIELD, dtype=np.uint8)
    assert not keep_image(field)  # field (background or plant) is not foreground either
