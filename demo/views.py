"""The display-size photo and mask of recent segmentations, kept so that the opacity slider recolours without the
network, in one store shared by all visitors and bounded in bytes and in age.

A visitor's page state keeps only the key of its view (a random token), never the arrays: gradio keeps the page
state of a thousand visitors and more, so a few megabytes in each would add up to gigabytes. A view is kept
compressed (the photo as a JPEG of high quality, the mask as a PNG: about a tenth of the arrays). Views past
``max_bytes`` (oldest first) or older than ``ttl_s`` are dropped; a dropped view is simply not found, and the page
asks for the photo again.
"""

import io
import secrets
import threading
import time
from collections import OrderedDict

import numpy as np
from PIL import Image

View = tuple[np.ndarray, np.ndarray]  # (RGB photo, class-id mask) at the same display size
#: JPEG quality of a kept photo (it is blended and compressed once more before it is shown).
PHOTO_QUALITY = 92


def pack(view: View) -> tuple[bytes, bytes]:
    """A view as (JPEG of the photo, PNG of the mask)."""
    photo, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(view[0]).save(photo, format="JPEG", quality=PHOTO_QUALITY)
    Image.fromarray(view[1]).save(mask, format="PNG", compress_level=1)
    return photo.getvalue(), mask.getvalue()


def unpack(packed: tuple[bytes, bytes]) -> View:
    """The view that ``pack`` compressed (the mask exactly, the photo as its JPEG)."""
    with Image.open(io.BytesIO(packed[0])) as photo, Image.open(io.BytesIO(packed[1])) as mask:
        return np.asarray(photo.convert("RGB")), np.asarray(mask)


class RecentViews:
    """Views by key, at most ``max_bytes`` in all and none older than ``ttl_s`` seconds; safe across threads."""

    def __init__(self, max_bytes: int, ttl_s: float) -> None:
        self.max_bytes, self.ttl_s = max_bytes, ttl_s
        self._views: OrderedDict[str, tuple[float, tuple[bytes, bytes]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._views)

    @property
    def nbytes(self) -> int:
        """Bytes of the compressed views kept."""
        return self._bytes

    def add(self, view: View) -> str:
        """Keep ``view`` (dropping the oldest beyond the bounds) and return its key."""
        key, packed = secrets.token_hex(16), pack(view)
        with self._lock:
            self._views[key] = (time.monotonic(), packed)
            self._bytes += sum(map(len, packed))
            self._drop(time.monotonic())
        return key

    def get(self, key: object) -> View | None:
        """The view kept under ``key``, or None (unknown, dropped, expired, or not a key at all)."""
        if not isinstance(key, str):
            return None
        with self._lock:
            self._drop(time.monotonic())
            kept = self._views.get(key)
        return None if kept is None else unpack(kept[1])

    def _drop(self, now: float) -> None:
        """Drop the oldest views while over the byte budget or past their time to live (the lock is held)."""
        while self._views:
            key, (added, packed) = next(iter(self._views.items()))
            if self._bytes <= self.max_bytes and now - added <= self.ttl_s:
                break
            del self._views[key]
            self._bytes -= sum(map(len, packed))
