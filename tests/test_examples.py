"""The app's bundled examples are what ``python -m train.make_examples`` writes from the shared datasets."""

import filecmp
from pathlib import Path

from train.make_examples import make_examples
from train.paths import DATASETS_DIR as DATASETS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_bundled_examples_are_what_make_examples_writes(tmp_path: Path) -> None:
    """Rebuilt from the datasets, every file equals the bundled one, byte for byte: nothing is edited by hand."""
    entries = make_examples(DATASETS, tmp_path, per_source=7)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    bundled = sorted(p.relative_to(EXAMPLES) for p in EXAMPLES.rglob("*") if p.is_file())
    assert written == bundled
    _, mismatch, errors = filecmp.cmpfiles(tmp_path, EXAMPLES, [str(p) for p in written], shallow=False)
    assert mismatch == [] and errors == []
    sources = {entry["source"] for entry in entries}
    assert sources == {
        "sift-flow",
        "msrc-v2",
        "camvid",
        "davis-2016",
        "feral-cats",
        "ccp-people",
        "oxford-pets",
        "ade20k",
    }
    # A close-up person, a pet and a vehicle among the photos of the first tab.
    photos = {p.name.split("__")[0] for p in (EXAMPLES / "photos").iterdir()}
    assert {"ccp-people", "oxford-pets", "everyday-photos"} <= photos


def test_licence_note_names_each_source_and_its_licence() -> None:
    """DATASETS.md, shown on the About tab, is a table for the app's users: one row per source, with its licence."""
    rows = [line.split(" | ") for line in (EXAMPLES / "DATASETS.md").read_text().splitlines() if line.startswith("| ")]
    licences = {row[0].removeprefix("| "): row[2].removesuffix(" |") for row in rows[2:]}
    assert licences.pop("davis-2016").startswith("CC BY-NC 4.0 (DAVIS terms of use)")
    assert licences.pop("everyday-photos").startswith("ImageNet terms of access: non-commercial")
    assert licences == {
        "sift-flow": "research use (LabelMe)",
        "msrc-v2": "research use",
        "camvid": "CC BY-NC 4.0, research use",
        "feral-cats": "Public Domain",
        "ccp-people": "Apache-2.0 (repository licence); the photos come from a street-fashion website",
        "oxford-pets": "CC BY-SA 4.0 (Oxford-IIIT Pet); the photos' copyright stays with their owners",
        "ade20k": "BSD-3",
    }
