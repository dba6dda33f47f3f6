"""The figure and the tables of experiments.robustness, from its JSON files alone: the mIoU under each corruption and
severity, clean beside corrupted and the checkpoint beside the teachers, as the paper's Table 5 sets them side by side
(Xie et al., NeurIPS 2021, Section 4.4), and each group's relative robustness: its mean corrupted figure over its
corruptions and severities divided by the clean figure."""

import json
import statistics
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.tables import markdown_table
from segformer.checkpoint import atomic_write
from task.corruptions import GROUPS, LABELS
from train.paths import DISCUSSION_DIR, REPO

#: The folder of experiments.robustness's JSON results, and the figure drawn from them.
RESULTS = REPO / "results" / "robustness"
FIGURE = DISCUSSION_DIR / "robustness.png"
METRICS = ("3-source mIoU", "people IoU", "pets IoU")


def load(folder: Path = RESULTS) -> dict[str, list[dict]]:
    """{model: its results, one per sample in sample order} of every JSON in ``folder`` (a full run is a model of
    its own, ``MODEL, all val``)."""
    models: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        key = result["model"] if isinstance(result["sample"], int) else f"{result['model']}, all val"
        models.setdefault(key, []).append(result)
    if not models:
        raise FileNotFoundError(f"no results in {folder}: run python -m experiments.robustness measure first")
    return {key: sorted(results, key=lambda r: str(r["sample"])) for key, results in models.items()}


def group_means(result: dict, metric: str) -> dict[str, float | None]:
    """{group: the mean of ``metric`` over the group's measured corruptions and severities}, and "all" over every
    corruption measured; None for a group with none measured."""
    figures = result["figures"]
    means: dict[str, float | None] = {}
    for group, names in {**GROUPS, "all": tuple(result["corruptions"])}.items():
        values = [
            figures[f"{name}/{severity}"][metric]
            for name in names
            if name in result["corruptions"]
            for severity in result["severities"]
        ]
        means[group] = statistics.fmean(values) if values and None not in values else None
    return means


def relative_robustness(result: dict, metric: str = METRICS[0]) -> dict[str, float | None]:
    """{group: mean corrupted ``metric`` / clean ``metric``} (the share of its clean figure a model keeps)."""
    clean = result["figures"]["clean"][metric]
    return {group: None if mean is None else mean / clean for group, mean in group_means(result, metric).items()}


def _spread(values: list[float], form: str = ".3f") -> str:
    """``mean (min-max)`` over samples, or the one value."""
    mean = format(statistics.fmean(values), form)
    return mean if len(values) == 1 else f"{mean} ({format(min(values), form)}-{format(max(values), form)})"


def table(models: dict[str, list[dict]], metric: str = METRICS[0]) -> str:
    """A Markdown table: per model, ``metric`` on the photos as they are and at the working size (clean), and each
    group's corrupted mean with the share of the clean figure it keeps: the mean over samples (their range)."""
    groups = [*GROUPS, "all"]
    header = ["model", "samples", "original", "clean", *(f"{group}: mean, share kept" for group in groups)]
    rows = []
    for model, results in models.items():
        cells = [model, str(len(results))]
        cells += [_spread([r["figures"][key][metric] for r in results]) for key in ("original", "clean")]
        for group in groups:
            means = [group_means(r, metric)[group] for r in results]
            shares = [relative_robustness(r, metric)[group] for r in results]
            cells.append("-" if None in means else f"{_spread(means)}, {_spread(shares, '.0%')}")
        rows.append(cells)
    return markdown_table(header, rows)


def figure(models: dict[str, list[dict]], metric: str = METRICS[0]) -> Figure:
    """One row per group: a panel per corruption (``metric`` against severity, clean at 0; the line the mean over
    samples, the band their range) and the group's relative robustness per model (bar: mean, whisker: range)."""
    fig = Figure(figsize=(17, 13), layout="constrained")
    axes = fig.subplots(len(GROUPS), 5)
    colours = [f"C{i}" for i in range(len(models))]
    for row, (group, names) in enumerate(GROUPS.items()):
        for col, name in enumerate(names):
            ax = axes[row, col]
            for colour, results in zip(colours, models.values(), strict=True):
                if name not in results[0]["corruptions"]:
                    continue
                severities = [0, *results[0]["severities"]]
                keys = ["clean", *(f"{name}/{s}" for s in results[0]["severities"])]
                values = np.array([[r["figures"][k][metric] for k in keys] for r in results], dtype=float)
                ax.plot(severities, values.mean(0), marker="o", color=colour)
                ax.fill_between(severities, values.min(0), values.max(0), color=colour, alpha=0.2, linewidth=0)
            ax.set(title=LABELS[name], xticks=[0, 1, 2, 3, 4, 5], ylim=(0, 1), xlabel="severity (0: clean)")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(f"{group}: {metric}")
        ax = axes[row, 4]
        top = 1.1
        for i, (colour, results) in enumerate(zip(colours, models.values(), strict=True)):
            shares = [relative_robustness(r, metric)[group] for r in results]
            if None in shares:
                continue
            mean = statistics.fmean(shares)
            ax.bar(i, mean, color=colour, yerr=[[mean - min(shares)], [max(shares) - mean]], capsize=4)
            ax.text(i, mean / 2, f"{mean:.0%}", ha="center", color="white", fontweight="bold")
            top = max(top, max(shares) + 0.05)
        ax.set(title=f"{group}: corrupted / clean", xticks=[], ylim=(0, top))
        ax.grid(alpha=0.3, axis="y")
    handles = [
        Line2D([], [], color=colour, marker="o", label=model) for colour, model in zip(colours, models, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    samples = ", ".join(f"{model}: {len(results)}" for model, results in models.items())
    fig.suptitle(f"{metric} under the paper's 16 corruptions (samples per model: {samples})")
    return fig


def draw(path: Path = FIGURE, folder: Path = RESULTS) -> None:
    """Draw the figure of ``folder``'s results to ``path`` (the same bytes for the same results and matplotlib)."""
    fig = figure(load(folder))
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))


def report(folder: Path, path: Path = FIGURE) -> None:
    """Draw the figure of ``folder``'s results to ``path`` and print one table per metric."""
    models = load(folder)
    draw(path, folder)
    for metric in METRICS:
        print(f"\n{metric}\n\n{table(models, metric)}")
    print(f"\nwrote {path}")
