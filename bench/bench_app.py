"""Latency of the app's requests end to end (`python app.py` in a subprocess), against the bare model.

    python -m bench.bench_app [--runs 20] [--checkpoint checkpoints/segformer-b0-4class] [--json-out PATH]

Four are measured in the same run on the same 1024x768 photo, in turn (bare, HTTP, route, client, bare, ...) so
that a change in the machine's load affects them alike, never at the same time:
- the bare model: the checkpoint's segformer.Segmenter on the decoded photo in this process (the app's working
  scale: the checkpoint's working_short_side, longer side at most 1024, and the mask at the photo's size);
- the request over plain HTTP, as a browser or curl makes it (gradio's documented routes: upload the photo, call
  /segment, read its event stream, download the overlay and the mask): the bare model's work plus the upload,
  decoding, class shares, the overlay, the mask PNG and the downloads;
- the app's own route for the mask alone (demo.mask_route: the photo POSTed as the body, the mask PNG as the
  answer): the bare model's work plus the body, decoding and the mask PNG;
- the same call as the HTTP request's through gradio_client, which adds the Python client's own work.
Prints JSON with the medians, the p95 and the ratio of each end-to-end median to the bare median (goal, for the
HTTP request and the route: <= 1.2), the run's settings and the machine; ``--json-out`` also writes it to a file.
The server inherits this process's environment, so OMP_NUM_THREADS sets the threads of all of them.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import httpx
import numpy as np
import torch
from gradio_client import Client, handle_file
from PIL import Image

from bench.interleave import PAUSE, interleaved
from bench.record import publish
from segformer import Segmenter
from segformer.allocator import keep_freed_memory
from segformer.checkpoint import DEFAULT_CHECKPOINT
from tests.servers import ROOT, AppServer

SIZE = (1024, 768)
GOAL = 1.2


def http_segment(http: httpx.Client, photo: Path, opacity: float) -> tuple[bytes, bytes]:
    """/segment over plain HTTP (``http`` based at the app's gradio_api/): upload, call, the event stream's
    result, and both files downloaded: the overlay JPEG's and the mask PNG's bytes."""
    upload = http.post("upload", files={"files": (photo.name, photo.read_bytes(), "image/jpeg")})
    image = {"path": upload.raise_for_status().json()[0], "meta": {"_type": "gradio.FileData"}}
    call = http.post("call/segment", json={"data": [image, opacity]}).raise_for_status()
    result = None
    with http.stream("GET", f"call/segment/{call.json()['event_id']}") as events:
        for line in events.iter_lines():
            if line.startswith("event: error"):
                raise RuntimeError("the /segment call failed")
            if line.startswith("data: ") and line != "data: null":
                result = json.loads(line.removeprefix("data: "))
    overlay, _, _, mask, _ = result
    return http.get(overlay["url"]).raise_for_status().content, http.get(mask["url"]).raise_for_status().content


def mask_route(http: httpx.Client, url: str, body: bytes) -> bytes:
    """POST /mask (the app at ``url``, through the open client ``http``) with the photo file ``body``: the mask PNG's
    bytes."""
    return http.post(f"{url}mask", content=body).raise_for_status().content


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_app", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed calls of each kind")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint stem, or hf://ORG/REPO/NAME")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()
    keep_freed_memory()  # as the app, served from its own process here, does

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        with Image.open(ROOT / "examples" / "photos" / "ade20k__ADE_val_00000001.jpg") as source:
            source.convert("RGB").resize(SIZE, Image.Resampling.BICUBIC).save(photo, quality=90)

        body = photo.read_bytes()
        segmenter = Segmenter.from_checkpoint(args.checkpoint)
        image = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1)
        server = AppServer(["--checkpoint", args.checkpoint], Path(tmp) / "app.log")
        try:
            url = server.wait()
            client = Client(url, verbose=False, download_files=str(Path(tmp) / "downloads"))
            with httpx.Client(base_url=url + "gradio_api/", timeout=60) as http:
                seconds = interleaved(
                    {
                        "bare": lambda: segmenter(image),
                        "http": lambda: http_segment(http, photo, 0.55),
                        "route": lambda: mask_route(http, server.url, body),
                        "client": lambda: client.predict(handle_file(str(photo)), 0.55, api_name="/segment"),
                    },
                    args.runs,
                    pause=PAUSE,
                )
        finally:
            server.stop()

    bare_p50 = statistics.median(seconds["bare"])
    report = {"photo": f"{SIZE[0]}x{SIZE[1]} JPEG", "checkpoint": Path(args.checkpoint).name}
    contestants = (
        ("bare", "bare_predict"),
        ("http", "http_request"),
        ("route", "mask_route"),
        ("client", "gradio_client"),
    )
    for name, key in contestants:
        p50 = statistics.median(seconds[name])
        report[f"{key}_p50_s"] = round(p50, 4)
        report[f"{key}_p95_s"] = round(float(np.percentile(seconds[name], 95)), 4)
        if name != "bare":
            report[f"ratio_{key}_over_bare"] = round(p50 / bare_p50, 3)
    report |= {
        "goal": f"request / bare <= {GOAL}",
        "meets_goal": {key: report[f"ratio_{key}_over_bare"] <= GOAL for key in ("http_request", "mask_route")},
    }
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
