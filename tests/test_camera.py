"""The live camera without a browser: demo.camera's frame function on real photos and on hostile frames, and the
camera tab served in this process, streamed to as gradio's page streams (tests/streaming.py)."""

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from bombs import png_claiming
from PIL import Image
from servers import free_port
from streaming import data_url, stream

import app
import segformer
from demo.camera import FRAME_PIXELS, MAX_FRAME_BYTES, STREAM_MAX_SIDE, STREAM_SHORT_SIDE, Camera
from segformer import Segmenter
from segformer.checkpoint import DEFAULT_CHECKPOINT
from segformer.images import InputError

PHOTOS = Path(__file__).parents[1] / "examples" / "photos"
PHOTO = PHOTOS / "ade20k__ADE_val_00000001.jpg"


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.from_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def camera(segmenter: Segmenter) -> Camera:
    return Camera(segmenter)


def jpeg(rgb: np.ndarray) -> bytes:
    """``rgb`` as a JPEG file, as a browser's canvas encodes a camera frame."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=92)
    return out.getvalue()


def frame_of(width: int, height: int) -> tuple[np.ndarray, bytes]:
    """A bundled photo resized to a camera's ``width`` x ``height``: its pixels and its JPEG file."""
    with Image.open(PHOTO) as photo:
        rgb = np.asarray(photo.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    return rgb, jpeg(rgb)


def test_a_frame_comes_back_as_its_overlay_and_class_shares_at_the_stream_scale(
    camera: Camera, segmenter: Segmenter
) -> None:
    """A 640x360 frame: the overlay and the mask at its size, the mask exactly segformer.predict's at the stream's
    working scale (shorter side 256: 455x256), the shares of the checkpoint's classes summing to 1."""
    _, file = frame_of(640, 360)
    frame = camera({"url": data_url(file)}, 0.5)
    decoded = np.asarray(Image.open(io.BytesIO(file)).convert("RGB"))
    assert frame.overlay.shape == (360, 640, 3) and frame.overlay.dtype == np.uint8
    assert frame.working == (455, 256)
    expected = segformer.predict(
        segmenter.model,
        decoded,
        mean=segmenter.mean,
        std=segmenter.std,
        short_side=STREAM_SHORT_SIDE,
        max_side=STREAM_MAX_SIDE,
    )
    assert torch.equal(torch.from_numpy(frame.mask), expected)
    assert list(frame.shares) == list(segmenter.classes)
    assert sum(frame.shares.values()) == pytest.approx(1.0)
    assert not np.array_equal(frame.overlay, decoded)  # coloured
    assert np.array_equal(camera(data_url(file), 0.0).overlay, decoded)  # the data URL alone works too


def test_a_large_frame_is_decoded_reduced(camera: Camera) -> None:
    """A 1920x1080 frame is decoded at a whole fraction of each side, at most FRAME_PIXELS, its aspect kept."""
    _, file = frame_of(1920, 1080)
    frame = camera({"url": data_url(file)}, 0.5)
    height, width = frame.mask.shape
    assert width * height <= FRAME_PIXELS and 1920 % width == 0 and width * 1080 == height * 1920
    assert frame.working == (455, 256)


def test_a_frame_arriving_while_another_is_segmented_is_dropped(
    camera: Camera, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, file = frame_of(320, 240)
    payload = {"url": data_url(file)}
    entered, release = threading.Event(), threading.Event()
    forward = camera.segmenter.model.forward

    def held(*args: object, **kwargs: object) -> torch.Tensor:
        entered.set()
        release.wait(timeout=120)
        return forward(*args, **kwargs)

    monkeypatch.setattr(camera.segmenter.model, "forward", held)
    results = []
    first = threading.Thread(target=lambda: results.append(camera(payload, 0.5)))
    first.start()
    assert entered.wait(timeout=120)
    assert camera(payload, 0.5) is None  # dropped at once, not queued
    release.set()
    first.join()
    monkeypatch.undo()
    assert results[0] is not None and camera(payload, 0.5) is not None  # the next frame is segmented again


def base64_url(data: bytes, header: str = "data:image/jpeg;base64") -> str:
    return f"{header},{base64.b64encode(data).decode()}"


HOSTILE = {
    "nothing": None,
    "a number": 42,
    "a server path": "/etc/passwd",
    "a path in a payload": {"path": "/etc/passwd"},
    "a web address": {"url": "http://127.0.0.1:1/frame.jpg"},
    "a file address": {"url": "file:///etc/passwd"},
    "not base64": {"url": "data:image/jpeg,/etc/passwd"},
    "broken base64": {"url": "data:image/jpeg;base64,%%%%"},
    "text": {"url": base64_url(b"/etc/passwd\n")},
    "an SVG": {"url": base64_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "data:image/svg+xml;base64")},
    "a tiny frame": {"url": base64_url(jpeg(np.zeros((8, 8, 3), np.uint8)))},
    "a decompression bomb": {"url": base64_url(png_claiming(100_000, 100_000))},
    "a truncated frame": {"url": base64_url(frame_of(640, 480)[1][:2000])},
    "too many bytes": {"url": "data:image/jpeg;base64," + "A" * (MAX_FRAME_BYTES // 3 * 4 + 8)},
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_frames_are_refused_with_a_message_that_names_no_path(camera: Camera, payload: object) -> None:
    with pytest.raises(InputError) as refused:
        camera(payload, 0.5)
    message = str(refused.value)
    assert "/etc" not in message and "/tmp" not in message and len(message) < 200


@pytest.fixture
def served(segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """app.camera_tab alone on a page served by this process, its streams ended after 3 s."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setattr(app, "TIME_LIMIT_S", 3)
    with gr.Blocks() as page:
        app.camera_tab(segmenter)
    page.queue()
    page.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield page.local_url
    finally:
        page.close()


# Gradio's queue summarises its runs with pandas calls that pandas 3 deprecates.
@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")
def test_the_server_ends_a_stream_at_its_time_limit_and_a_bad_frame_ends_only_its_stream(served: str) -> None:
    """A stream of real frames gets overlays until the server ends it (the client would go on for 60 s); a stream
    of frames that are not images ends with the decoder's message; the page goes on serving either way."""
    frames = [frame_of(320, 240)[1], frame_of(240, 320)[1]]
    bad = stream(served, "camera", [b"not a frame"], [0.5], every_s=0.25, seconds=60)
    assert bad.error is not None and "image" in bad.error and "/" not in bad.error
    streamed = stream(served, "camera", frames, [0.5], every_s=0.25, seconds=60)
    assert streamed.error is None and streamed.ended_by_server_s is not None and streamed.ended_by_server_s < 60
    overlays = [data[0] for _, data, _ in streamed.outputs if isinstance(data[0], dict) and data[0].get("url")]
    assert overlays, streamed


def test_streams_have_a_concurrency_group_of_their_own(segmenter: Segmenter) -> None:
    """A stream holds its worker for its whole time: in the photos' group it would keep every photo waiting."""
    with gr.Blocks() as page:
        app.camera_tab(segmenter)
    (event,) = [fn for fn in page.fns.values() if fn.connection == "stream"]
    assert event.concurrency_id != app.MODEL_EVENTS["concurrency_id"]
    assert event.time_limit == app.TIME_LIMIT_S and event.concurrency_limit == app.STREAMS
