"""bench/README.md against the committed results: a table is the JSON file its section links, figure by figure,
and a section whose run left no JSON says so rather than passing its figures off as a result."""

import json
import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "bench" / "README.md"
#: What a section says when its figures are one run's printout with no JSON committed.
NOT_RECORDED = "no committed record"


def sections() -> dict[str, str]:
    """The README's text under each "## " heading, by heading."""
    parts = re.split(r"^## (.+)$", README.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``text`` (header and separator rows left out), as stripped cells."""
    lines = [line.strip() for line in text.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    separators = {i for i, row in enumerate(rows) if all(set(cell) <= set("-:") for cell in row)}
    return [row for i, row in enumerate(rows) if i not in separators and i + 1 not in separators]


def linked_json(text: str) -> list[Path]:
    """The JSON files that ``text`` links (Markdown links, relative to bench/)."""
    return [(README.parent / target).resolve() for target in re.findall(r"\]\(([^)\s]+\.json)\)", text)]


def agrees(shown: str, value: float, unit: float = 1.0) -> bool:
    """Whether the figure ``shown`` (a decimal string, in ``unit``s of ``value``) is ``value`` rounded to its digits."""
    decimals = len(shown.partition(".")[2])
    return abs(float(shown) * unit - value) <= (0.5 * 10.0**-decimals + 1e-9) * unit


def agrees_mib(shown: str, mib: float) -> bool:
    """Whether a size cell ("16 MiB", "0.97 GiB") is ``mib`` MiB, rounded to its digits."""
    number, unit = shown.split()
    return agrees(number, mib, {"MiB": 1.0, "GiB": 1024.0}[unit])


def check_attention_cost(rows: list[list[str]], data: dict, text: str) -> None:
    """The attention-cost table (bench_model --sr-sweep): one row per case of the JSON, in its order, each cell the
    case's figure; the section names the run's threads, runs and memory cap."""
    assert f"--threads {data['threads']} --runs {data['runs']}" in text
    assert len(rows) == len(data["cases"])
    for row, case in zip(rows, data["cases"], strict=True):
        sr, size, stage1, maps, latency, forward, with_maps = row
        assert re.findall(r"\d+", sr) == [str(r) for r in case["sr_ratios"]], row
        assert size == "x".join(map(str, case["size"])), row
        assert agrees_mib(stage1, case["stage1_attention_mib"]) and agrees_mib(maps, case["attention_maps_mib"]), row
        seconds, ratio = re.fullmatch(r"([\d.]+) s \(([\d.]+)\)", latency).groups()
        assert agrees(seconds, case["forward"]["latency_s"]) and agrees(ratio, case["forward"]["latency_ratio"]), row
        assert agrees_mib(forward, case["forward"]["peak_memory_mib"]), row
        kept = case["attention_maps"]
        if kept["status"] == "ok":
            peak, ratio = re.fullmatch(r"(\d+ MiB) \(([\d.]+)\)", with_maps).groups()
            assert agrees_mib(peak, kept["peak_memory_mib"]) and agrees(ratio, kept["peak_memory_ratio"]), row
        else:
            assert kept["status"] == "out_of_memory", row
            assert with_maps == f"**out of memory** under the {data['memory_cap_gib']:g} GiB cap", row


#: How each committed result is checked against its table, by file name.
CHECKS: dict[str, Callable[[list[list[str]], dict, str], None]] = {"attention-cost.json": check_attention_cost}


def test_every_table_is_its_committed_json_or_says_it_has_none() -> None:
    tied = 0
    for heading, text in sections().items():
        rows = table_rows(text)
        if not rows:
            continue
        files = linked_json(text)
        if not files:
            assert NOT_RECORDED in text, f"{heading!r}: a table with neither a committed JSON nor {NOT_RECORDED!r}"
            continue
        (path,) = files
        assert path.is_file() and path.name in CHECKS, f"{heading!r}: {path} is missing or has no check"
        CHECKS[path.name](rows, json.loads(path.read_text()), text)
        tied += 1
    assert tied == len(CHECKS)  # every check ran on its table: a renamed link or section cannot drop one
