"""The live camera on a real video: frames per second and seconds per frame, and what a photo waits while it streams.

    python -m bench.bench_camera [--sequence blackswan] [--runs 26] [--stream-s 10] [--photos 4] [--json-out PATH]

In this process: the JPEG frames of a DAVIS 2016 sequence (640x360), each sent as the page sends it (a data URL),
through demo.camera.Camera, the function the camera tab calls (decoding, the network at the stream's working scale,
the overlay, the class shares), timed in turn with its peer, the bare forward of the network at that working size,
and with the bare forward at the photo tab's working scale (the checkpoint's); and how many of the stream's mask
pixels agree with the photo tab's scale. Served (`python app.py`, tests/servers.py): photos (1024x768) requested
through gradio_client's `/segment` one after another, alone (the peer: before and after), then while one stream sends
the sequence's frames every STREAM_EVERY_S seconds as the page does (tests/streaming.py); the stream's overlays per
second and the seconds the server spent on each frame (the tab's function, as gradio times it), and each photo's
seconds end to end. Prints the JSON report with the run's settings and the machine (bench/record.py); ``--json-out``
also writes it to a file. The server inherits this process's environment, so OMP_NUM_THREADS sets the threads of both.
"""

import argparse
import io
import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gradio_client import Client, handle_file
from PIL import Image

from bench.interleave import interleaved
from bench.record import publish
from demo.camera import STREAM_EVERY_S, Camera
from segformer import Segmenter
from segformer.checkpoint import DEFAULT_CHECKPOINT
from segformer.predict import as_images, normalise, resize_images, working_size
from tests.servers import ROOT, AppServer
from tests.streaming import data_url, stream
from train.paths import DATASETS_DIR

DAVIS = DATASETS_DIR / "davis-2016"
PHOTO_SIZE = (1024, 768)
OPACITY = 0.55


def sequence_frames(sequence: str) -> list[Path]:
    """The JPEG frames of a DAVIS 2016 sequence, in order."""
    frames = sorted((DAVIS / "images").glob(f"*/{sequence}_*.jpg"))
    if not frames:
        raise SystemExit(f"no frames of {sequence!r} under {DAVIS / 'images'}")
    return frames


def at_working_size(rgb: np.ndarray, segmenter: Segmenter) -> torch.Tensor:
    """The normalised image (1, 3, h, w) at ``segmenter``'s working size, as its network receives it."""
    x = normalise(as_images(rgb)[None], segmenter.mean, segmenter.std)
    return resize_images(x, working_size(*rgb.shape[:2], segmenter.max_side, short_side=segmenter.short_side))


def cycling(calls: list[Callable[[], object]]) -> Callable[[], object]:
    """One call that makes the next of ``calls`` each time (one frame after another, looped)."""
    turn = itertools.cycle(calls)
    return lambda: next(turn)()


def summary(seconds: list[float]) -> dict[str, float]:
    """Median and 95th percentile of ``seconds``."""
    return {"p50_s": round(statistics.median(seconds), 4), "p95_s": round(float(np.percentile(seconds, 95)), 4)}


def in_process(segmenter: Segmenter, files: list[bytes], runs: int) -> dict:
    """The camera's frame function against the bare forward at its working size and at the photo tab's."""
    camera = Camera(segmenter)
    payloads = [{"url": data_url(file)} for file in files]
    frames = [np.asarray(Image.open(io.BytesIO(file)).convert("RGB")) for file in files]
    stream_x = [at_working_size(rgb, camera.segmenter) for rgb in frames]
    photo_x = [at_working_size(rgb, segmenter) for rgb in frames]
    model = segmenter.model
    with torch.inference_mode():
        seconds = interleaved(
            {
                "frame": cycling([lambda p=p: camera(p, OPACITY) for p in payloads]),
                "forward": cycling([lambda x=x: model(x) for x in stream_x]),
                "forward_photo_scale": cycling([lambda x=x: model(x) for x in photo_x]),
            },
            runs,
        )
    pairs = zip(payloads, frames, strict=True)
    agreement = [np.mean(camera(payload, OPACITY).mask == segmenter(rgb).numpy()) for payload, rgb in pairs]
    frame, forward, photo = (statistics.median(seconds[name]) for name in ("frame", "forward", "forward_photo_scale"))
    height, width = frames[0].shape[:2]
    return {
        "frame_size": f"{width}x{height}",
        "stream_working_size": f"{stream_x[0].shape[-1]}x{stream_x[0].shape[-2]}",
        "photo_working_size": f"{photo_x[0].shape[-1]}x{photo_x[0].shape[-2]}",
        "camera_frame": summary(seconds["frame"]),
        "frames_per_s": round(1 / frame, 2),
        "bare_forward": summary(seconds["forward"]),
        "ratio_frame_over_bare_forward": round(frame / forward, 3),
        "bare_forward_photo_scale": summary(seconds["forward_photo_scale"]),
        "ratio_photo_scale_over_bare_forward": round(photo / forward, 3),
        "mask_agreement_with_photo_scale": round(float(np.mean(agreement)), 4),
    }


def photo_seconds(client: Client, photo: Path, count: int) -> list[float]:
    """Seconds of ``count`` `/segment` requests made one after another."""
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        client.predict(handle_file(str(photo)), OPACITY, api_name="/segment")
        seconds.append(time.perf_counter() - start)
    return seconds


def served(checkpoint: str, files: list[bytes], stream_s: float, photos: int, tmp: Path) -> dict:
    """Photos alone and while a stream runs, through a real app server; the stream's overlays per second and the
    seconds the server spent on each of its frames."""
    photo = tmp / "photo.jpg"
    with Image.open(ROOT / "examples" / "photos" / "ade20k__ADE_val_00000001.jpg") as source:
        source.convert("RGB").resize(PHOTO_SIZE, Image.Resampling.BICUBIC).save(photo, quality=90)
    server = AppServer(["--checkpoint", checkpoint], tmp / "app.log")
    try:
        url = server.wait()
        client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
        photo_seconds(client, photo, 1)  # warm-up
        alone = photo_seconds(client, photo, photos)
        streamed = []
        streaming = threading.Thread(
            target=lambda: streamed.append(stream(url, "camera", files, [OPACITY], STREAM_EVERY_S, stream_s))
        )
        streaming.start()
        time.sleep(1.0)  # the stream's first frames are in
        with_stream = []
        while streaming.is_alive():
            with_stream += photo_seconds(client, photo, 1)
        alone += photo_seconds(client, photo, photos)
    finally:
        server.stop()
    (result,) = streamed
    overlays = [
        (at, seconds) for at, data, seconds in result.outputs if isinstance(data[0], dict) and data[0].get("url")
    ]
    arrivals = [at for at, _ in overlays]
    alone_p50, with_p50 = statistics.median(alone), statistics.median(with_stream)
    return {
        "photo": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG",
        "stream_every_s": STREAM_EVERY_S,
        "stream_s": stream_s,
        "frames_sent": result.sent,
        "overlays": len(overlays),
        "overlays_per_s": round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 2) if len(arrivals) > 1 else 0.0,
        "server_seconds_per_frame": summary([seconds for _, seconds in overlays]),
        "stream_error": result.error,
        "photo_alone": {**summary(alone), "count": len(alone)},
        "photo_with_stream": {**summary(with_stream), "count": len(with_stream)},
        "ratio_photo_with_stream_over_alone": round(with_p50 / alone_p50, 3),
    }


def main() -> None:
    """Measure, print the JSON report and, with --json-out, write it."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_camera", description=__doc__.split("\n")[0])
    parser.add_argument("--sequence", default="blackswan", help="DAVIS 2016 sequence whose frames are the video")
    parser.add_argument("--runs", type=int, default=26, help="timed frames of each kind in this process")
    parser.add_argument("--stream-s", type=float, default=10.0, help="seconds of the served stream")
    parser.add_argument("--photos", type=int, default=4, help="photos timed alone before the stream and again after")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint stem, or hf://ORG/REPO/NAME")
    parser.add_argument("--note", default="", help="what else ran on the machine, recorded in the report")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()

    files = [path.read_bytes() for path in sequence_frames(args.sequence)]
    segmenter = Segmenter.from_checkpoint(args.checkpoint)
    report = {
        "video": f"DAVIS 2016 {args.sequence}",
        "frames": len(files),
        "checkpoint": Path(args.checkpoint).name,
        **in_process(segmenter, files, args.runs),
    }
    with tempfile.TemporaryDirectory() as tmp:
        report["served"] = served(args.checkpoint, files, args.stream_s, args.photos, Path(tmp))
    report["note"] = args.note
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
