"""The figures a stage's selection rule compares (results/README.md), from ``train.evaluate --json`` reports.

    python -m train.standing results/eval/stage9-wise.json results/eval/stage15-last.json

A report of the raw val splits of SIFT Flow, MSRC-v2, CamVid and feral-cats gives four figures: the three sources'
mIoU and their person/animal and vehicle IoU, from their confusion matrices summed (as ``train.evaluate`` pools
several folders), and feral-cats' cat IoU, its person/animal IoU with the "not a cat" pixels predicted as an animal
counted as false positives (``per_class_iou_with_partial``). The table it prints is the one results/README.md
quotes for each candidate.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from task.classes import CLASS_NAMES
from train.evaluate import combine

#: The labelled sources pooled into the rule's mIoU, and the everyday-cat source scored on its own.
SOURCES = ("sift-flow", "msrc-v2", "camvid")
CATS = "feral-cats"
COLUMNS = ("3-source mIoU", "person/animal", "vehicle", "cat IoU")


def rule_figures(report: dict) -> dict[str, float]:
    """{COLUMNS: value} of one report; it must hold the three SOURCES and CATS, each once."""
    by_name = {Path(folder).name: result for folder, result in report["per_source"].items()}
    missing = [name for name in (*SOURCES, CATS) if name not in by_name]
    if missing:
        raise ValueError(f"the report has no {', '.join(missing)}")
    pooled = combine([by_name[name] for name in SOURCES], CLASS_NAMES)
    return dict(
        zip(
            COLUMNS,
            (
                pooled["miou"],
                pooled["per_class_iou"]["person/animal"],
                pooled["per_class_iou"]["vehicle"],
                by_name[CATS]["per_class_iou_with_partial"]["person/animal"],
            ),
            strict=True,
        )
    )


def table(reports: dict[str, dict]) -> str:
    """A Markdown table, one row of rule_figures per named report."""
    lines = ["| report | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, report in reports.items():
        lines.append(f"| {name} | " + " | ".join(f"{value:.3f}" for value in rule_figures(report).values()) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.standing", description=__doc__.split("\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="train.evaluate --json outputs")
    args = parser.parse_args(argv)
    try:
        print(table({path.stem: json.loads(path.read_text()) for path in args.reports}))
    except (OSError, ValueError, KeyError) as err:
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()
