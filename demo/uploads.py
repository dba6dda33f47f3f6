"""Which uploaded file an API call may name: only one that gradio itself placed in its upload cache.

The app's image inputs are not preprocessed by gradio (decoding errors are the app's own, and large images are
decoded reduced), so a call's payload names a path that nothing has checked. :func:`cached_upload` accepts a
regular file inside the cache folder, resolved (so a symbolic link out of it is refused) and without ``..``
segments. Every refusal, whatever its reason (a server path, a missing file, a folder, a link out), gets the same
message, REFUSED, which names no path and so tells nothing about the server's files. A call without any image gets
MISSING, which says how a client sends one.
"""

import os
from pathlib import Path, PurePath

REFUSED = "This image did not arrive as an upload to this app; please upload it again."
MISSING = 'No image was sent: upload a photo (from gradio_client, pass handle_file("photo.jpg")).'
#: Longest path considered (gradio's cache paths are under 300 characters).
MAX_PATH_LENGTH = 4096


class UploadRefused(ValueError):
    """A payload that does not name a file of the upload cache; the message is always REFUSED."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


class NoUpload(ValueError):
    """A call without an image; the message is always MISSING."""

    def __init__(self) -> None:
        super().__init__(MISSING)


def cached_upload(payload: object, cache: Path) -> tuple[Path, str | None]:
    """(resolved path, original file name or None) of an upload payload (gradio's FileData as a dict) that names
    a regular file inside ``cache`` (an absolute, resolved folder); NoUpload without a payload, UploadRefused for
    any other."""
    if payload is None:
        raise NoUpload()
    if not isinstance(payload, dict):
        raise UploadRefused()
    path = payload.get("path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH or "\0" in path:
        raise UploadRefused()
    given = PurePath(path)
    if not given.is_absolute() or ".." in given.parts:
        raise UploadRefused()
    resolved = Path(os.path.realpath(given))
    if not resolved.is_relative_to(cache) or resolved == cache or not resolved.is_file():
        raise UploadRefused()
    name = payload.get("orig_name")
    return resolved, name if isinstance(name, str) and len(name) <= MAX_PATH_LENGTH else None
