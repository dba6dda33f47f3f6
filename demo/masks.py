"""The full-size masks the Segment tab offers for download: palette PNGs (pixel value = class id) in a temporary
folder of the app's own, the most recent ``kept`` of them, each in a folder of its own.

A mask is written atomically (segformer.checkpoint.atomic_write), so a half-written file is never served; the file is
named after the upload with everything but letters, digits, '.', '-' and '_' replaced, so a client's file name
never reaches a path outside the folder. Older masks are deleted (gradio has copied what it serves by then), and
the folder goes when the process ends.
"""

import re
import shutil
import tempfile
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import BinaryIO

import numpy as np

from segformer.checkpoint import atomic_write
from segformer.images import palette_png

#: Longest stem kept from an upload's name.
STEM_CHARS = 80


def write_png(mask: np.ndarray, palette: np.ndarray, out: str | Path | BinaryIO) -> None:
    """Write ``mask`` to ``out`` (a path or a binary file) as the app serves every mask: a palette PNG whose pixel
    values are the class ids, fast to encode (zlib level 1)."""
    palette_png(mask, palette).save(out, format="PNG", compress_level=1)


def mask_stem(upload_name: str | None) -> str:
    """The file stem a mask gets for an upload called ``upload_name`` (no folder, no dots leading out)."""
    stem = re.sub(r"[^\w.-]+", "_", Path(upload_name or "photo").stem)[:STEM_CHARS].lstrip(".")
    return stem or "photo"


class MaskFiles:
    """The last ``kept`` masks saved, on disk under ``root``; safe across threads."""

    def __init__(self, kept: int, palette: np.ndarray) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="segformer-app-masks-")  # removed with the process
        self.root = Path(self._folder.name)
        self.kept = kept
        self.palette = palette
        self._recent: deque[Path] = deque()
        self._lock = threading.Lock()

    def save(self, mask: np.ndarray, upload_name: str | None) -> Path:
        """Write ``mask`` as ``<stem>-mask.png`` in a new folder, drop the oldest beyond ``kept``; its path."""
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        path = folder / f"{mask_stem(upload_name)}-mask.png"
        atomic_write(path, lambda tmp: write_png(mask, self.palette, tmp))
        with self._lock:
            self._recent.append(folder)
            dropped = [self._recent.popleft() for _ in range(len(self._recent) - self.kept)]
        for old in dropped:
            shutil.rmtree(old, ignore_errors=True)
        return path
