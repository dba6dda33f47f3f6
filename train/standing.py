"""The figures a stage's selection rule compares (results/README.md), from ``train.evaluate --json`` reports.

    python -m train.standing results/eval/stage18-s384.json results/eval/stage19-s384.json [results/teachers-val.json]

A report of the raw val splits of SIFT Flow, MSRC-v2, CamVid and feral-cats gives four figures: the three sources'
mIoU and their person/animal and vehicle IoU, from their confusion matrices summed (as ``train.evaluate`` pools
several folders), and feral-cats' cat IoU, its person/animal IoU with the "not a cat" pixels predicted as an animal
counted as false positives (``per_class_iou_with_partial``). Where the report holds ccp-people and oxford-pets, their
person/animal IoU is read the same way (the pixels around the one person or pet are "not person/animal", see
task.classes.SCORING_TABLES); where it doesn't, the cell is "-". A ``train.teach --score`` JSON gives one row per
fusion rule, so the teachers stand beside the student in one table. The table it prints is the one
results/README.md quotes for each candidate.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from task.classes import CLASS_NAMES
from train.evaluate import combine

#: The labelled sources pooled into the rule's mIoU, and the sources of one class each, scored on their own.
SOURCES = ("sift-flow", "msrc-v2", "camvid")
CATS = "feral-cats"
PEOPLE = "ccp-people"
PETS = "oxford-pets"
COLUMNS = ("3-source mIoU", "person/animal", "vehicle", "cat IoU", "people IoU", "pets IoU")


def _one_class_iou(result: dict) -> float:
    return result["per_class_iou_with_partial"]["person/animal"]


def _figures(pooled: dict, by_name: dict[str, dict]) -> dict[str, float | None]:
    if CATS not in by_name:
        raise ValueError(f"the report has no {CATS}")
    optional = {name: _one_class_iou(by_name[name]) if name in by_name else None for name in (PEOPLE, PETS)}
    values = (
        pooled["miou"],
        pooled["per_class_iou"]["person/animal"],
        pooled["per_class_iou"]["vehicle"],
        _one_class_iou(by_name[CATS]),
        optional[PEOPLE],
        optional[PETS],
    )
    return dict(zip(COLUMNS, values, strict=True))


def rule_figures(report: dict) -> dict[str, float | None]:
    """{COLUMNS: value} of one train.evaluate report; it must hold the three SOURCES and CATS, each once."""
    by_name = {Path(folder).name: result for folder, result in report["per_source"].items()}
    missing = [name for name in SOURCES if name not in by_name]
    if missing:
        raise ValueError(f"the report has no {', '.join(missing)}")
    return _figures(combine([by_name[name] for name in SOURCES], CLASS_NAMES), by_name)


def teacher_figures(scored: dict) -> dict[str, dict[str, float | None]]:
    """{fusion rule: {COLUMNS: value}} of a train.teach --score JSON: each folder is named by its sources, and the
    folder of the three SOURCES is already pooled."""
    rows = {}
    for fusion, per_folder in scored.items():
        by_sources = {tuple(result["sources"]): result for result in per_folder.values()}
        pooled = by_sources.get(tuple(sorted(SOURCES)))
        if pooled is None:
            raise ValueError(f"the teachers' scores have no folder of {', '.join(SOURCES)}")
        rows[f"teachers, {fusion}"] = _figures(pooled, {s[0]: r for s, r in by_sources.items() if len(s) == 1})
    return rows


def rows_of(name: str, report: dict) -> dict[str, dict[str, float | None]]:
    """The table rows of one JSON file: one for a train.evaluate report, one per fusion rule for the teachers'."""
    if "per_source" in report:
        return {name: rule_figures(report)}
    return teacher_figures(report)


def table(reports: dict[str, dict]) -> str:
    """A Markdown table, one row of figures per named report (per fusion rule for the teachers' scores)."""
    lines = ["| report | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, report in reports.items():
        for row, figures in rows_of(name, report).items():
            cells = ("-" if value is None else f"{value:.3f}" for value in figures.values())
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.standing", description=__doc__.split("\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="train.evaluate --json or train.teach --score outputs")
    args = parser.parse_args(argv)
    try:
        print(table({path.stem: json.loads(path.read_text()) for path in args.reports}))
    except (OSError, ValueError, KeyError) as err:
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()
