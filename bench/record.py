"""What every benchmark's JSON file records beside its figures: the command that made it and the machine it ran on."""

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from segformer.checkpoint import save_json


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine's architecture where the file names none)."""
    cpuinfo = Path("/proc/cpuinfo")
    rows = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [row.partition(":")[2].strip() for row in rows if row.startswith("model name")]
    return names[0] if names else platform.machine()


def run_record(prog: str, argv: list[str], runs: int) -> dict[str, Any]:
    """The run's settings and machine, taken at its end: the command (``prog`` and its arguments ``argv``), the timed
    runs, torch's intra-op threads in this process, OMP_NUM_THREADS (which a server started from here inherits),
    the 1/5/15-minute load average, the CPU model, its core count and torch's version."""
    return {
        "command": shlex.join([*prog.split(), *argv]),
        "runs": runs,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def publish(report: dict[str, Any], prog: str, runs: int, json_out: Path | None) -> None:
    """Add the run's record (:func:`run_record`, of this process's command line) to ``report``, print it as JSON
    and, with ``json_out``, also write it there."""
    report |= run_record(prog, sys.argv[1:], runs)
    print(json.dumps(report, indent=1))
    if json_out:
        save_json(json_out, report)
