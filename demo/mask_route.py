"""POST /mask: a photo in the request's body, its mask out as the response's, in one plain HTTP request.

    curl --data-binary @photo.jpg http://127.0.0.1:7860/mask -o mask.png

The page and gradio's API take four requests for one photo (upload, call, the event stream, the download) and a
queue between them; this route takes one, for a program that wants the mask alone. It runs what the Segment tab
runs (``demo.photo``'s decoder, bounded as there, then ``demo.segment``), and answers with the mask as a palette
PNG (pixel value = class id, shown in the class colours) at the photo's size, or at a whole fraction of it for a
photo over ``max_pixels``. Headers say what the numbers mean: ``X-Classes`` (the names, comma-separated, in id
order), ``X-Photo-Size`` and ``X-Working-Size`` (width x height) and ``X-Inference-Seconds``.

Every request is hostile until checked, with the queue's kinds of bound: at most ``slots`` requests are taken at
once (being read, waiting or running; the next is told 503 with Retry-After), a body over ``max_bytes`` is refused
(413) by its Content-Length or as soon as it is read past it, a body still arriving after ``body_seconds`` is refused
(408: a slow sender holds a slot no longer), and the route runs one forward at a time (beside the one the page's
queue may be running). A refusal is JSON, ``{"error": "..."}``, with one line that names no server path; nothing
is written to disk.
"""

import io
import threading

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from demo.masks import write_png
from demo.photo import decode_photo
from demo.segment import segment
from segformer import Segmenter
from segformer.images import InputError

#: The route's path on the app's server.
PATH = "/mask"
#: Seconds a request's body may take to arrive (100 MB at about 30 Mbit/s).
BODY_SECONDS = 30.0


class Refused(Exception):
    """A request the route answers with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MaskRoute:
    """The /mask endpoint for one loaded model, added to a FastAPI app by
    ``app.add_api_route(PATH, route, methods=["POST"])``."""

    def __init__(
        self, segmenter: Segmenter, max_bytes: int, max_pixels: int, slots: int, body_seconds: float = BODY_SECONDS
    ) -> None:
        self.segmenter, self.max_bytes, self.max_pixels, self.slots = segmenter, max_bytes, max_pixels, slots
        self.body_seconds = body_seconds
        self._taken = 0  # requests being served; read and changed on the event loop only
        self._forward = threading.Lock()

    async def __call__(self, request: Request) -> Response:
        """The mask PNG of the photo in ``request``'s body, or a refusal as JSON."""
        if self._taken >= self.slots:
            return refusal(503, f"The server is busy ({self.slots} requests in hand); try again shortly.")
        self._taken += 1
        try:
            with anyio.fail_after(self.body_seconds):
                body = await self.read_body(request)
            png, headers = await anyio.to_thread.run_sync(self.mask_png, body)
        except Refused as err:
            return refusal(err.status, str(err))
        except TimeoutError:
            return refusal(408, f"The photo took longer than {self.body_seconds:g} s to arrive.")
        finally:
            self._taken -= 1
        return Response(png, media_type="image/png", headers=headers)

    async def read_body(self, request: Request) -> bytes:
        """The request's body, refused (413) past ``max_bytes`` before it is all read, and (400) when empty."""
        too_large = Refused(413, f"The photo is larger than the {self.max_bytes / 2**20:.0f} MB accepted.")
        try:
            declared = int(request.headers.get("content-length", "0"))
        except ValueError:
            raise Refused(400, "The Content-Length header is not a number.") from None
        if declared > self.max_bytes:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large
        if not body:
            raise Refused(400, "No photo: send the image file as the request's body.")
        return bytes(body)

    def mask_png(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """(PNG bytes of the mask, the response's headers) of the image file ``body``: decoded, one forward at a
        time, encoded."""
        try:
            photo = decode_photo(io.BytesIO(body), self.max_pixels)
        except InputError as err:
            raise Refused(400, " ".join(str(err).split())) from None
        with self._forward:
            mask, seconds, (work_width, work_height) = segment(self.segmenter, photo.rgb)
        out = io.BytesIO()
        write_png(mask, self.segmenter.palette, out)
        width, height = photo.size
        headers = {
            "X-Classes": ",".join(self.segmenter.classes),
            "X-Photo-Size": f"{width}x{height}",
            "X-Working-Size": f"{work_width}x{work_height}",
            "X-Inference-Seconds": f"{seconds:.3f}",
        }
        return out.getvalue(), headers


def refusal(status: int, message: str) -> JSONResponse:
    """A refusal's response: ``{"error": message}``, with Retry-After on 503."""
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
