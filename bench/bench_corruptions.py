"""What the page's corruption control (task.corruptions) costs a request on the largest photos the app accepts,
against the same photo segmented clean in the same run.

    python -m bench.bench_corruptions [--runs 3] [--json-out PATH]

One `python app.py` (tests/servers.py), called through gradio_client: the largest JPEG (segformer.images.MAX_PIXELS)
and the largest PNG (demo.photo.MAX_OTHER_PIXELS) of bench.bench_app_large, each sent to ``/segment`` (the peer:
clean, its mask at the photo's decoded size) and to ``/segment_corrupted`` under every corruption the page offers at
severity 5, the costliest. The photo is corrupted at the working size, so a corruption's work is bounded by that,
not by the photo. Per case: the median seconds end to end and of the server's own work ("whole request"), and the
ratio to the clean request. The bound is the app's for a largest image (bench.bench_app_large: at most 3 s end to
end); the slowest corruption is named. Prints JSON; ``--json-out`` also writes it to a file.
"""

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from gradio_client import Client, handle_file

from bench.bench_app_large import GOAL_S, served_images
from bench.record import publish
from task.corruptions import CORRUPTIONS

SEVERITY = 5


def call(client: Client, photo: Path, corruption: str | None) -> tuple[float, float]:
    """(seconds end to end, the server's "whole request" seconds) of one request, clean when ``corruption`` is
    None."""
    start = time.perf_counter()
    if corruption is None:
        answer = client.predict(handle_file(str(photo)), 0.55, api_name="/segment")
    else:
        answer = client.predict(handle_file(str(photo)), 0.55, corruption, SEVERITY, api_name="/segment_corrupted")
    seconds = time.perf_counter() - start
    return seconds, float(re.search(r"whole request ([\d.]+) s", answer[2])[1])


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_corruptions", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="calls of each case")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()
    report: dict = {"severity": SEVERITY, "goal_s": GOAL_S, "photos": {}}
    with tempfile.TemporaryDirectory() as tmp, served_images(Path(tmp)) as (_, client, paths):
        call(client, paths["peer"], None)  # warm
        for photo in ("largest JPEG", "largest PNG"):
            cases = {}
            for corruption in (None, *CORRUPTIONS):
                runs = [call(client, paths[photo], corruption) for _ in range(args.runs)]
                cases[corruption or "none"] = {
                    "seconds_p50": round(statistics.median(run[0] for run in runs), 3),
                    "server_seconds_p50": round(statistics.median(run[1] for run in runs), 3),
                }
            clean = cases["none"]["seconds_p50"]
            for case in cases.values():
                case["ratio_to_clean"] = round(case["seconds_p50"] / clean, 2)
            slowest = max(CORRUPTIONS, key=lambda name: cases[name]["seconds_p50"])
            report["photos"][photo] = {
                "cases": cases,
                "slowest": slowest,
                "meets_goal": cases[slowest]["seconds_p50"] <= GOAL_S,
            }
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
