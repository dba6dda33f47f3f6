"""The live camera: a browser's camera frames segmented as they arrive, at a working size a 2-core CPU keeps up with.

Gradio streams a webcam as JPEG data URLs (``gr.Image(sources=["webcam"], streaming=True)``: one frame every
STREAM_EVERY_S seconds, and only the latest frame waits while one is being segmented). Every frame is hostile until
decoded here: it must be a base64 data URL of at most MAX_FRAME_BYTES, decoded by the photo decoder
(``demo.photo``: a few formats, bounded pixels, a JPEG reduced by its DCT) to at most FRAME_PIXELS; anything
else is an InputError whose message names no path. The network runs through ``segformer.Segmenter`` at a shorter
side of STREAM_SHORT_SIDE (the photo tab runs the shipped checkpoint at 384: the stream trades detail for frames per
second, ``bench/bench_camera.py``), the mask comes back at the frame's decoded size, and the overlay and the class
shares are made as the photo tab makes them. One frame is segmented at a time in the whole app, whatever the number
of streams: a frame that arrives while another is being segmented is dropped, not queued, so the streams never hold
more than one frame's work at once.
"""

import base64
import binascii
import io
import threading
from dataclasses import dataclass, replace

import numpy as np

from demo.photo import decode_photo
from demo.segment import class_shares, segment
from segformer import Segmenter
from segformer.images import InputError, blend

#: Seconds between two frames sent by the browser (at most this many frames per second: 1 / STREAM_EVERY_S).
STREAM_EVERY_S = 0.25
#: Seconds a stream runs before the server ends it (the visitor starts it again with one click).
TIME_LIMIT_S = 60
#: Streams served at once; more visitors wait in the queue until one ends. All share one frame at a time.
STREAMS = 2
#: The stream's working scale: the frame's shorter side before the network, and the longest longer side.
STREAM_SHORT_SIDE, STREAM_MAX_SIDE = 256, 512
#: Largest frame decoded (640x480): a larger frame is decoded at a whole fraction of each side (a JPEG by its DCT).
FRAME_PIXELS = 640 * 480
#: Largest frame accepted, in bytes of the image file (a 1920x1440 JPEG from a browser is under 1 MB).
MAX_FRAME_BYTES = 3_000_000
#: The camera's size the browser asks for: the frames need no more than FRAME_PIXELS.
CONSTRAINTS = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}
NOT_A_FRAME = "The camera frame did not arrive as an image; start the camera again."
TOO_LARGE = f"The camera frame is over {MAX_FRAME_BYTES / 1e6:.0f} MB; use a smaller camera resolution."


@dataclass(frozen=True)
class Frame:
    """A segmented camera frame: the overlay and the class-id mask at the frame's decoded size, the share of each
    class, the seconds in the network's path and the (width, height) the network ran at."""

    overlay: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8
    shares: dict[str, float]
    seconds: float
    working: tuple[int, int]


def frame_bytes(payload: object) -> bytes:
    """The image file inside a streamed frame: gradio's ``{"url": "data:image/...;base64,..."}`` (or the data URL
    alone), at most MAX_FRAME_BYTES; InputError for anything else (a path or a web address is never read)."""
    url = payload.get("url") if isinstance(payload, dict) else payload
    if not isinstance(url, str) or not url.startswith("data:image/"):
        raise InputError(NOT_A_FRAME)
    header, comma, data = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise InputError(NOT_A_FRAME)
    if len(data) > (MAX_FRAME_BYTES + 2) // 3 * 4:
        raise InputError(TOO_LARGE)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InputError(NOT_A_FRAME) from err


def decode_frame(payload: object) -> np.ndarray:
    """A streamed frame as (H, W, 3) uint8 RGB of at most FRAME_PIXELS (see the module's docstring)."""
    return decode_photo(io.BytesIO(frame_bytes(payload)), FRAME_PIXELS).rgb


class Camera:
    """Segments the frames of every visitor's stream, one frame at a time, with a checkpoint's Segmenter at the
    stream's working scale."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = replace(segmenter, short_side=STREAM_SHORT_SIDE, max_side=STREAM_MAX_SIDE)
        self._busy = threading.Lock()

    def __call__(self, payload: object, opacity: float) -> Frame | None:
        """The segmented frame, or None when another frame is being segmented (this one is dropped); InputError for
        a frame that cannot be used."""
        rgb = decode_frame(payload)
        if not self._busy.acquire(blocking=False):
            return None
        try:
            mask, seconds, working = segment(self.segmenter, rgb)
        finally:
            self._busy.release()
        shares = class_shares(mask, self.segmenter.classes)
        return Frame(blend(rgb, mask, self.segmenter.palette, opacity), mask, shares, seconds, working)
