"""Latency of the app's /segment endpoint end to end (gradio_client -> `python app.py`), against the bare model.

    python -m bench.bench_app [--runs 20] [--checkpoint checkpoints/segformer-b0-4class] [--json-out PATH]

Both are measured in the same run on the same 1024x768 photo, interleaved (bare, endpoint, bare, ...) so that a
change in the machine's load affects both alike, never at the same time: the bare time is the checkpoint's
segformer.Segmenter on the decoded photo in this process (the app's working scale: the checkpoint's
working_short_side, longer side at most 1024); the end-to-end time adds the upload, decoding, class shares, the
overlay, the mask PNG and downloading the results.
Prints JSON with the medians, the p95 and the ratio of the end-to-end median to the bare median (goal: < 2), the run's
settings and the machine; ``--json-out`` also writes it to a file. The server inherits this process's environment, so
OMP_NUM_THREADS sets the threads of both.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from gradio_client import Client, handle_file
from PIL import Image

from bench.interleave import interleaved
from bench.record import publish
from segformer import Segmenter
from segformer.checkpoint import DEFAULT_CHECKPOINT
from tests.servers import ROOT, AppServer

SIZE = (1024, 768)
GOAL = 2.0


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_app", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed calls of each kind")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint stem, or hf://ORG/REPO/NAME")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        with Image.open(ROOT / "examples" / "photos" / "ade20k__ADE_val_00000001.jpg") as source:
            source.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC).save(photo, quality=90)

        segmenter = Segmenter.from_checkpoint(args.checkpoint)
        image = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1)
        server = AppServer(["--checkpoint", args.checkpoint], Path(tmp) / "app.log")
        try:
            client = Client(server.wait(), verbose=False, download_files=str(Path(tmp) / "downloads"))
            seconds = interleaved(
                {
                    "bare": lambda: segmenter(image),
                    "endpoint": lambda: client.predict(handle_file(str(photo)), 0.55, api_name="/segment"),
                },
                args.runs,
            )
        finally:
            server.stop()

    bare, end_to_end = seconds["bare"], seconds["endpoint"]
    p50, p95 = statistics.median(end_to_end), float(np.percentile(end_to_end, 95))
    bare_p50 = statistics.median(bare)
    report = {
        "photo": f"{SIZE[0]}x{SIZE[1]} JPEG",
        "checkpoint": Path(args.checkpoint).name,
        "segment_endpoint_p50_s": round(p50, 4),
        "segment_endpoint_p95_s": round(p95, 4),
        "bare_predict_p50_s": round(bare_p50, 4),
        "bare_predict_p95_s": round(float(np.percentile(bare, 95)), 4),
        "ratio_p50_over_bare": round(p50 / bare_p50, 3),
        "goal": f"ratio < {GOAL}",
        "meets_goal": p50 / bare_p50 < GOAL,
    }
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
