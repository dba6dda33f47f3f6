"""Markdown tables of results measured over several seeds: mean and range, and a difference judged by the spread."""

import statistics
from collections.abc import Iterable, Sequence


def spread(values: Sequence[float]) -> str:
    """``mean (min-max)``, or the one value with ``(1 seed)``."""
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.fmean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def verdict(values: Sequence[float], reference: Sequence[float]) -> str:
    """The mean difference, and whether it is outside the seeds' spread: each arm's range, whichever is wider."""
    if not values or not reference or values is reference:
        return ""
    delta = statistics.fmean(values) - statistics.fmean(reference)
    noise = max(max(values) - min(values), max(reference) - min(reference))
    if len(values) < 2 or len(reference) < 2:
        return f"{delta:+.3f} (too few seeds to judge)"
    return f"{delta:+.3f} ({'outside' if abs(delta) > noise else 'inside'} the seed spread {noise:.3f})"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
