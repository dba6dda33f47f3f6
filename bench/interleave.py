"""Timing shared by the benchmarks: calls taken in turn, so that a change in the machine's load hits them alike."""

import time
from collections.abc import Callable

#: Seconds the benchmarks of a contest against onnxruntime (bench_model, profile_model, bench_app) sleep before each
#: timed call, for the threads the call before left spinning to go to sleep (see ``interleaved``).
PAUSE = 0.1


def interleaved(
    calls: dict[str, Callable[[], object]], runs: int, warmup: int = 2, pause: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls``, taken in turn ``runs`` times after ``warmup`` untimed rounds.

    ``pause`` seconds are slept before each call: the worker threads a call leaves spin-waiting for more work
    (onnxruntime's pool, OpenMP's) would otherwise take cores from the next call, which on two cores costs the call
    after onnxruntime's a fifth of its speed. A request to an app comes after such a pause too.
    """
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(warmup + runs):
        for name, call in calls.items():
            time.sleep(pause)
            start = time.perf_counter()
            call()
            if round_ >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return seconds
