"""What the largest images the app accepts cost it, against a normal photo in the same run, and whether a normal
photo sent behind one waits long; then 24 clients at once.

    python -m bench.bench_app_large [--runs 3] [--json-out PATH]

One `python app.py` (tests/servers.py), called through gradio_client. Cases: the largest JPEG accepted
(segformer.images.MAX_PIXELS, decoded reduced by its DCT) and the largest PNG (demo.photo.MAX_OTHER_PIXELS,
decoded whole, RGBA, the costliest of its modes), each against the peer, a 1024x768 JPEG. Per case: the server's
peak resident memory while it serves the image (VmHWM, reset before each call through /proc/PID/clear_refs) above
its resting memory, the seconds of the call end to end (upload, decoding, network, mask, downloads) and of the
server's own work in it (the "whole request" time the page shows), and the
latency of the peer photo sent 0.3 s after the large one, so that it queues behind it. Goals: at most 1.5 GB and
3 s for a largest image, at most 4 s for the photo behind it. Prints JSON: medians over the runs, the ratios to
the peer, the run's settings and the machine; ``--json-out`` also writes it to a file. The server inherits this
process's environment, OMP_NUM_THREADS included.
"""

import argparse
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from bench.record import publish
from demo.photo import MAX_OTHER_PIXELS
from segformer.images import MAX_PIXELS
from tests.servers import ROOT, AppServer

PHOTO = ROOT / "examples" / "photos" / "ade20k__ADE_val_00000001.jpg"
PEER_SIZE = (1024, 768)
GOAL_PEAK_GB, GOAL_S, GOAL_QUEUED_S = 1.5, 3.0, 4.0
CLIENTS = 24


def largest(pixels: int, aspect: float = 4 / 3) -> tuple[int, int]:
    """The largest width x height of ``aspect`` with at most ``pixels`` pixels."""
    height = int((pixels / aspect) ** 0.5)
    width = int(pixels / height)
    while width * height > pixels:
        width -= 1
    return width, height


def write_images(folder: Path) -> dict[str, Path]:
    """The peer photo and the largest images accepted, made from a bundled photo (upscaled: real-looking content,
    so that the files are as large as a camera's)."""
    with Image.open(PHOTO) as source:
        base = source.convert("RGB")
    paths = {"peer": folder / "peer.jpg", "largest JPEG": folder / "largest.jpg", "largest PNG": folder / "largest.png"}
    base.resize(PEER_SIZE, Image.Resampling.BICUBIC).save(paths["peer"], quality=90)
    base.resize(largest(MAX_PIXELS), Image.Resampling.BICUBIC).save(paths["largest JPEG"], quality=85)
    rgba = base.resize(largest(MAX_OTHER_PIXELS), Image.Resampling.BICUBIC).convert("RGBA")
    rgba.save(paths["largest PNG"], compress_level=1)
    return paths


@contextmanager
def served_images(folder: Path) -> Iterator[tuple[AppServer, Client, dict[str, Path]]]:
    """A `python app.py` serving (logging to ``folder``), a client of it downloading into ``folder``, and the images
    of :func:`write_images` written there; the server is stopped on exit."""
    paths = write_images(folder)
    server = AppServer([], folder / "app.log")
    try:
        yield server, Client(server.wait(), verbose=False, download_files=str(folder / "downloads")), paths
    finally:
        server.stop()


def memory_kb(pid: int, field: str) -> int:
    """VmRSS or VmHWM of process ``pid`` in kB."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)[1])


def timed(call: Callable[[], object]) -> float:
    """Seconds that ``call`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(client: Client, pid: int, image: Path, peer: Path, downloads: Path) -> dict:
    """One large call with the peer sent behind it: peak memory above rest (MB), seconds of each."""

    def segment(path: Path) -> Callable[[], object]:
        own = Client(client.src, verbose=False, download_files=str(downloads))
        return lambda: own.predict(handle_file(str(path)), 0.55, api_name="/segment")

    answers: list = []
    call_large, behind = segment(image), segment(peer)

    def large() -> None:
        answers.append(call_large())

    rest = memory_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    seconds: dict[str, float] = {}
    worker = threading.Thread(target=lambda: seconds.update(large=timed(large)))
    worker.start()
    time.sleep(0.3)
    seconds["queued"] = timed(behind)
    worker.join()
    server = float(re.search(r"whole request ([\d.]+) s", answers[0][2])[1])
    return {"peak_mb": (memory_kb(pid, "VmHWM") - rest) / 1024, "server": server, **seconds}


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_app_large", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="calls of each case")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp, served_images(Path(tmp)) as (server, client, paths):
        folder = Path(tmp)
        pid = server.process.pid
        call_peer = lambda: client.predict(handle_file(str(paths["peer"])), 0.55, api_name="/segment")  # noqa: E731
        call_peer()  # warm
        peer = statistics.median(timed(call_peer) for _ in range(args.runs))
        report["peer"] = {"image": f"{PEER_SIZE[0]}x{PEER_SIZE[1]} JPEG", "seconds_p50": round(peer, 3)}
        for case in ("largest JPEG", "largest PNG"):
            downloads = folder / "downloads"
            runs = [measure(client, pid, paths[case], paths["peer"], downloads) for _ in range(args.runs)]
            p50 = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            with Image.open(paths[case]) as image:
                size = f"{image.size[0]}x{image.size[1]} {image.mode} {image.format}"
            report[case] = {
                "image": size,
                "file_mb": round(paths[case].stat().st_size / 1e6, 1),
                "peak_rss_above_rest_mb_p50": round(p50["peak_mb"]),
                "peak_rss_above_rest_mb_max": round(max(run["peak_mb"] for run in runs)),
                "seconds_p50": round(p50["large"], 3),
                "server_seconds_p50": round(p50["server"], 3),
                "ratio_to_peer": round(p50["large"] / peer, 2),
                "peer_queued_behind_it_s_p50": round(p50["queued"], 3),
                "peer_queued_behind_it_s_max": round(max(run["queued"] for run in runs), 3),
                "meets_goals": max(run["peak_mb"] for run in runs) <= GOAL_PEAK_GB * 1024
                and p50["large"] <= GOAL_S
                and p50["queued"] <= GOAL_QUEUED_S,
            }
        validation = sorted((ROOT / "examples" / "validation" / "images" / "val").glob("*.jpg"))[:CLIENTS]

        def one_client(path: Path) -> tuple[float, tuple[int, int]]:
            own = Client(server.url, verbose=False, download_files=str(folder / "downloads"))
            start = time.perf_counter()
            mask = own.predict(handle_file(str(path)), 0.55, api_name="/segment")[3]
            return time.perf_counter() - start, Image.open(mask).size

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(one_client, validation))
        served = sum(size == Image.open(path).size for (_, size), path in zip(answers, validation, strict=True))
        report["concurrent_clients"] = {
            "clients": CLIENTS,
            "served_with_full_size_masks": served,
            "slowest_s": round(max(seconds for seconds, _ in answers), 2),
            "median_s": round(float(np.median([seconds for seconds, _ in answers])), 2),
        }
        report["server_resting_rss_mb"] = round(memory_kb(pid, "VmRSS") / 1024)
    report["goal"] = f"largest image <= {GOAL_PEAK_GB} GB peak and <= {GOAL_S} s; photo behind it <= {GOAL_QUEUED_S} s"
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
