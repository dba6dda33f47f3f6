"""Markdown tables of results measured over several seeds: mean and range, and a difference judged by the spread,
unpaired (each arm's own range) or paired (the same-seed differences)."""

import statistics
from collections.abc import Iterable, Mapping, Sequence


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


def paired_differences(values: Mapping[int, float], reference: Mapping[int, float]) -> list[float]:
    """``values[seed] - reference[seed]`` for every seed both arms were trained with, in seed order.

    A seed fixes the data order and the augmentation whatever the arm, so the part of a score that comes from the
    order cancels in the same-seed difference, where the unpaired range counts it as noise.
    """
    return [values[seed] - reference[seed] for seed in sorted(values.keys() & reference.keys())]


def paired_holds(differences: Sequence[float]) -> bool:
    """A paired difference holds when it has the same sign on every seed and its mean is larger than the spread
    (max - min) of the differences; with fewer than two seeds nothing holds."""
    if len(differences) < 2:
        return False
    same_sign = all(d > 0 for d in differences) or all(d < 0 for d in differences)
    return same_sign and abs(statistics.fmean(differences)) > max(differences) - min(differences)


def paired_verdict(differences: Sequence[float]) -> str:
    """``d_0 / d_1 ...: mean m, spread s, holds`` (or ``inside the noise``), the per-seed differences in seed order."""
    if not differences:
        return ""
    each = " / ".join(f"{d:+.3f}" for d in differences)
    if len(differences) < 2:
        return f"{each} (1 seed: too few to judge)"
    mean, noise = statistics.fmean(differences), max(differences) - min(differences)
    judged = "holds" if paired_holds(differences) else "inside the noise"
    return f"{each}: mean {mean:+.3f}, spread {noise:.3f}, {judged}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table: the header, its rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
