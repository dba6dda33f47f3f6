"""The README as a front door: short, and it says what setting up costs before anyone pays it."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_is_under_8_kb_and_says_what_set_up_costs() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 8 * 1024
    assert re.search(r"`\.venv` takes [\d.]+ GB", text) and re.search(r"`make test` takes about \d+ minutes", text)
    assert "--index-url https://download.pytorch.org/whl/cpu" in text  # the way to a small install


def test_every_megapixel_limit_has_its_unit() -> None:
    """'over 16.8 get a message' said nothing: each limit the README states is in megapixels, said so."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    refused = re.search(r"corrupt files, (.*?) get a message", text)[1]
    limits = re.findall(r"over (\d+(?:\.\d+)?)(?: (\w+))?", refused)
    assert len(limits) == 2 and all(unit == "megapixels" for _, unit in limits), refused
