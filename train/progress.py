"""Progress of long loops: a tqdm bar on a terminal, a few plain lines in a log."""

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """``items`` with a tqdm bar when stderr is a terminal; otherwise a plain line at each quarter of ``total``."""
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        return tqdm(items, desc=description, total=total, unit=unit, leave=False)
    return _quarter_lines(items, description, total, unit)


def _quarter_lines(items: Iterable[T], description: str, total: int, unit: str) -> Iterator[T]:
    started = time.perf_counter()
    marks = {max(1, total * k // 4) for k in range(1, 5)}
    for i, item in enumerate(items, start=1):
        yield item
        if i in marks:
            rate = i / max(time.perf_counter() - started, 1e-9)
            print(f"{description}: {i}/{total} {unit}, {rate:.2f} {unit}/s", file=sys.stderr, flush=True)
