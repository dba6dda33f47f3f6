"""The app's API called as an attacker would: server paths instead of uploads, wrong arguments, many sessions;
and the store that keeps a session's pictures out of its state.

One server (`python app.py`, tests/servers.py) with an upload cache of its own (GRADIO_TEMP_DIR in a temporary
folder, so that a test can plant a symbolic link in it), called through gradio_client and through raw HTTP
(gradio's /gradio_api/call/NAME: a POST, then the result as server-sent events), as any caller on the network can.
The memory test serves the same page from this process, so that it can count the heap the sessions keep.
"""

import gc
import io
import json
import os
import re
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from bombs import png_claiming
from fastapi import FastAPI
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from servers import AppServer, free_port

import app
from demo.checkpoints import load_model
from demo.mask_route import PATH as MASK_PATH
from demo.mask_route import MaskRoute
from demo.uploads import REFUSED
from demo.views import RecentViews
from segformer.checkpoint import DEFAULT_CHECKPOINT

ROOT = Path(__file__).parents[1]
PHOTO = ROOT / "examples" / "photos" / "ade20k__ADE_val_00000001.jpg"
OTHER_PHOTO = ROOT / "examples" / "photos" / "ade20k__ADE_val_00000002.jpg"
CHECKPOINT_JSON = ROOT / "checkpoints" / "segformer-b0-4class.json"
SESSIONS, SESSION_KEPT_KB, SESSION_PHOTO = 200, 400, (640, 480)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's upload cache (gradio's GRADIO_TEMP_DIR)."""
    return tmp_path_factory.mktemp("gradio-cache").resolve()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Iterator[AppServer]:
    app = AppServer([], tmp_path_factory.mktemp("hostile") / "app.log", {"GRADIO_TEMP_DIR": str(cache)})
    app.wait()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server: AppServer) -> Client:
    return Client(server.url, verbose=False)


def call(url: str, api: str, data: list) -> tuple[str, dict | list]:
    """POST ``data`` to /gradio_api/call/``api`` as raw JSON (NaN allowed, as Python writes it), then read the
    result: ('complete', outputs) or ('error', gradio's error payload)."""
    body = json.dumps({"data": data})
    posted = httpx.post(f"{url}gradio_api/call/{api}", content=body, headers={"Content-Type": "application/json"})
    posted.raise_for_status()
    events = httpx.get(f"{url}gradio_api/call/{api}/{posted.json()['event_id']}", timeout=120).text
    kind, payload = re.findall(r"^event: (\w+)\ndata: (.*)$", events, re.MULTILINE)[-1]
    return kind, json.loads(payload)


def upload(url: str, path: Path) -> dict:
    """``path`` uploaded through gradio's /gradio_api/upload: the payload that names its copy in the cache."""
    with open(path, "rb") as file:
        cached = httpx.post(f"{url}gradio_api/upload", files={"files": file}).json()[0]
    return {"path": cached, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


# ---------------------------------------------------------------------------- paths that are not uploads


def refused_paths(cache: Path, uploaded: str) -> dict[str, str]:
    """Paths a caller may name instead of an upload, each a readable image or file on the server."""
    link = cache / f"link-{uuid.uuid4().hex}.jpg"
    link.symlink_to(OTHER_PHOTO)
    folder, name = Path(uploaded).parent.name, Path(uploaded).name
    return {
        "a server photo": str(OTHER_PHOTO),
        "the checkpoint folder": str(CHECKPOINT_JSON),
        "a folder": str(ROOT),
        "a missing file": str(cache / "absent.jpg"),
        "a symbolic link out of the cache": str(link),
        "'..' segments": f"{cache}/{folder}/../{folder}/{name}",
        "'..' out of the cache": f"{cache}/{folder}/../../{os.path.relpath(OTHER_PHOTO, cache.parent)}",
        "a relative path": os.path.relpath(OTHER_PHOTO),
    }


def test_server_paths_are_refused_with_one_message(server: AppServer, client: Client, cache: Path) -> None:
    """Every path that is not an upload gets REFUSED, which names no path, through raw HTTP and gradio_client, on
    both endpoints that take a photo; a real upload still works."""
    uploaded = upload(server.url, PHOTO)
    for what, path in refused_paths(cache, uploaded["path"]).items():
        for api, rest in (("segment", [0.0]), ("attention", [None, None, "mean over heads"])):
            kind, answer = call(server.url, api, [{"path": path}, *rest])
            assert kind == "error" and answer["error"] == REFUSED, (what, api, answer)
        with pytest.raises(AppError) as refused:
            client.predict({"path": path}, 0.0, api_name="/segment")
        assert str(refused.value) == REFUSED and path not in str(refused.value), what
    # Marked as gradio's file data, a path outside the cache is refused by gradio's own check, before the app:
    # without any text, so naming no path either.
    kind, answer = call(server.url, "segment", [{"path": str(OTHER_PHOTO), "meta": {"_type": "gradio.FileData"}}, 0])
    assert kind == "error" and str(OTHER_PHOTO) not in json.dumps(answer)
    kind, answer = call(server.url, "segment", [uploaded, 0.0])
    assert kind == "complete" and "Photo **683×512**" in answer[2]
    overlay, _, _, mask = client.predict(handle_file(str(PHOTO)), 0.5, api_name="/segment")
    assert Image.open(mask).size == (683, 512)


# ---------------------------------------------------------------------------- wrong arguments


NOT_OFFERED, WHOLE_SEVERITY = "The corruption must be 'none'", "Severity must be a whole number from 1 to 5."


def test_wrong_arguments_get_one_line_before_any_work(server: AppServer, client: Client) -> None:
    """Each wrong argument gets its own one-line message (a long input is not repeated back), the log one line
    each and no traceback; out-of-range values are refused, not clamped."""
    photo = upload(server.url, PHOTO)
    long_name = "x" * 100_000
    cases = {
        ("segment", "opacity 'abc'"): ([photo, "abc"], "Opacity must be a number."),
        ("segment", "opacity NaN"): ([photo, float("nan")], "Opacity must be a finite number."),
        ("segment", "opacity None"): ([photo, None], "Opacity must be a number."),
        ("segment", "opacity 2"): ([photo, 2], "Opacity must be from 0 to 1."),
        ("segment_corrupted", "glass blur"): ([photo, 0.5, "glass_blur", 3], NOT_OFFERED + " or one of the 13"),
        ("segment_corrupted", "100,000 characters"): ([photo, 0.5, long_name, 3], NOT_OFFERED),
        ("segment_corrupted", "severity 2.5"): ([photo, 0.5, "fog", 2.5], WHOLE_SEVERITY),
        ("segment_corrupted", "severity 6"): ([photo, 0.5, "fog", 6], WHOLE_SEVERITY),
        ("segment_corrupted", "severity as text"): ([photo, 0.5, "fog", "3"], "Severity must be a number."),
        ("attention", "x as text"): ([photo, "abc", 1, "mean over heads"], "Query x must be a number."),
        ("attention", "y as a list"): ([photo, 1, [1, 2], "mean over heads"], "Query y must be a number."),
        ("attention", "x NaN"): ([photo, float("nan"), 1, "mean over heads"], "Query x must be a finite number."),
        ("attention", "x beyond the photo"): ([photo, 683, 1, "mean over heads"], "Query x must be from 0 to 682"),
        ("attention", "heads"): ([photo, 1, 1, "all"], "Heads must be one of"),
        ("validation_example", "None"): ([None], "Name a validation example"),
        ("validation_example", "a number"): ([3], "The validation example must be given by its name"),
        ("validation_example", "100,000 characters"): ([long_name], "There is no validation example by that name"),
    }
    log = Path(server.log)
    before = log.read_text()
    for (api, what), (data, message) in cases.items():
        kind, answer = call(server.url, api, data)
        assert kind == "error" and answer["error"].startswith(message), (api, what, answer)
        assert "\n" not in answer["error"] and len(answer["error"]) < 200, (api, what)
    with pytest.raises(AppError, match="Name a validation example"):
        client.predict(api_name="/validation_example")  # no arguments at all
    added = log.read_text()[len(before) :]
    assert "Traceback" not in added and long_name not in added
    assert len(re.findall(r"refused: ", added)) == len(cases) + 1, added


def test_no_call_skips_the_queue(server: AppServer) -> None:
    """Gradio also serves each function at /gradio_api/run/NAME, run at once in its thread pool: no queue, no
    concurrency limit, so many such calls would run the model side by side. Off a Hugging Face Space that route
    is open unless the app closes it; it is closed, and the same call through the queue still answers."""
    photo = upload(server.url, PHOTO)
    calls = {
        "segment": [photo, 0.5],
        "segment_corrupted": [photo, 0.5, "fog", 3],
        "attention": [photo, 1, 1, "mean over heads"],
        "validation_example": [None],
    }
    for api, data in calls.items():
        direct = httpx.post(f"{server.url}gradio_api/run/{api}", json={"data": data}, timeout=120)
        assert direct.status_code == 404, (api, direct.status_code, direct.text[:200])
    assert call(server.url, "segment", calls["segment"])[0] == "complete"


# ---------------------------------------------------------------------------- POST /mask


def post_mask(url: str, body: object, **headers: str) -> httpx.Response:
    """POST ``body`` (bytes, or an iterator of chunks sent without a length) to the app's /mask."""
    return httpx.post(f"{url}mask", content=body, headers=headers, timeout=120)


def test_the_mask_route_answers_as_the_page(server: AppServer) -> None:
    """A photo POSTed as the body comes back as the same mask the page's /segment offers for download (pixel for
    pixel: one decoder, one prediction path), a palette PNG at the photo's size, with headers naming the classes,
    the sizes and the seconds."""
    answer = post_mask(server.url, PHOTO.read_bytes(), **{"Content-Type": "image/jpeg"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png", answer.text[:200]
    routed = Image.open(io.BytesIO(answer.content))
    assert routed.mode == "P" and routed.size == (683, 512)
    kind, outputs = call(server.url, "segment", [upload(server.url, PHOTO), 0.5])
    assert kind == "complete"
    paged = np.asarray(Image.open(io.BytesIO(httpx.get(outputs[3]["url"]).content)))
    assert np.array_equal(np.asarray(routed), paged)
    classes = json.loads(CHECKPOINT_JSON.read_text())["classes"]
    assert answer.headers["x-classes"].split(",") == classes
    assert answer.headers["x-photo-size"] == "683x512" and answer.headers["x-working-size"] == "512x384"
    assert 0 < float(answer.headers["x-inference-seconds"]) < 60


def mask_head(length: int) -> bytes:
    """The head of a POST /mask whose body is ``length`` bytes, the connection closed after the answer."""
    return f"POST /mask HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of the HTTP/1.1 answer read from ``sock`` until the server closes it."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    status, _, rest = answer.partition(b"\r\n\r\n")
    return int(status.split()[1]), rest


def raw_request(url: str, head: bytes) -> tuple[int, bytes]:
    """(status, body) of a request whose head is written byte for byte (a Content-Length httpx would not send)."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=60) as sock:
        sock.sendall(head)
        return read_answer(sock)


def test_the_mask_route_refuses_with_one_line(server: AppServer) -> None:
    """Each bad request gets its status and a one-line JSON message naming no server path, the app's log no
    traceback: no body, bytes that are no image, an image whose header claims too many pixels, a Content-Length
    over the limit (refused before the body is read), a body streamed past the limit without one, a GET."""
    megabyte = b"\0" * 2**20
    before = Path(server.log).read_text()
    cases = {
        "no body": (post_mask(server.url, b""), 400, "No photo"),
        "not an image": (post_mask(server.url, os.urandom(5000)), 400, "The file is not an image format"),
        "too many pixels": (post_mask(server.url, png_claiming(60_000, 60_000)), 400, "The image is larger than"),
        "streamed past the limit": (
            post_mask(server.url, (megabyte for _ in range(app.MAX_UPLOAD // 2**20 + 1))),
            413,
            "The photo is larger than the 100 MB accepted.",
        ),
    }
    for what, (answer, status, message) in cases.items():
        assert answer.status_code == status, (what, answer.status_code, answer.text[:200])
        error = answer.json()["error"]
        assert error.startswith(message) and "\n" not in error and str(ROOT) not in error, (what, error)
    status, body = raw_request(server.url, mask_head(10_000_000_000))
    assert status == 413 and json.loads(body)["error"].startswith("The photo is larger than"), body[:200]
    assert httpx.get(f"{server.url}mask").status_code == 405
    assert "Traceback" not in Path(server.log).read_text()[len(before) :]


def test_the_mask_route_takes_at_most_its_slots(server: AppServer) -> None:
    """While MASK_SLOTS requests are in hand (their bodies still arriving), the next is told 503 at once, with
    Retry-After; once their bodies end, all of them are answered, and the route takes requests again."""
    photo = PHOTO.read_bytes()
    address = httpx.URL(server.url)
    held = [socket.create_connection((address.host, address.port), timeout=120) for _ in range(app.MASK_SLOTS)]
    try:
        for sock in held:
            sock.sendall(mask_head(len(photo)) + photo[:1000])
        deadline = time.monotonic() + 60
        while (busy := post_mask(server.url, photo)).status_code != 503 and time.monotonic() < deadline:
            assert busy.status_code == 200  # not all held requests are in hand yet
            time.sleep(0.2)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text[:200]
        assert busy.json()["error"].startswith("The server is busy")
        for sock in held:
            sock.sendall(photo[1000:])
        for sock in held:
            status, body = read_answer(sock)
            assert status == 200 and body.startswith(b"\x89PNG"), (status, body[:200])
    finally:
        for sock in held:
            sock.close()
    assert post_mask(server.url, photo).status_code == 200


def test_a_slow_body_gives_its_slot_back() -> None:
    """A body still arriving after the route's body_seconds is refused with 408, and the slot it held is free again:
    with one slot, the next request is answered. The route served from this process (uvicorn, as gradio serves it)
    with a deadline of 1 s."""
    route = MaskRoute(load_model(str(DEFAULT_CHECKPOINT)), app.MAX_UPLOAD, app.MASK_PIXELS, 1, body_seconds=1.0)
    api = FastAPI()
    api.add_api_route(MASK_PATH, route, methods=["POST"])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        while not server.started:
            time.sleep(0.05)
        photo = PHOTO.read_bytes()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            began = time.monotonic()
            sock.sendall(mask_head(len(photo)) + photo[:1000])  # and nothing more
            status, body = read_answer(sock)
        assert status == 408 and 1.0 <= time.monotonic() - began < 10, (status, body[:200])
        assert json.loads(body)["error"] == "The photo took longer than 1 s to arrive."
        assert post_mask(url, photo).status_code == 200
    finally:
        server.should_exit = True
        thread.join(30)


# ---------------------------------------------------------------------------- memory per session


# gradio's queue, served in this process, warns of pandas options at every event: its own business, not the test's.
@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")
def test_new_sessions_keep_little_memory(tmp_path: Path) -> None:
    """200 new sessions, each segmenting a 640x480 photo once, grow the app's heap by less than 400 KB a session: a
    session keeps only the key of its view, which the bounded store holds compressed, so sessions are kept by the
    thousand. Measured: about 210 KB; with the view itself kept in the session's state, 1,030 KB.

    The heap is Python's and numpy's allocations as tracemalloc counts them, in this process (the app served from
    it, called over HTTP as above): unlike the resident size, which the allocator's slack moves by tens of MB from
    machine to machine, it counts what is kept. Gradio's own state of a session (each component's config) is about
    75 KB of it."""
    path = tmp_path / "photo.jpg"
    Image.open(PHOTO).convert("RGB").resize(SESSION_PHOTO).save(path, quality=90)
    demo = app.build_demo(load_model(str(DEFAULT_CHECKPOINT)))
    port = free_port()
    app.serve(demo, "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        photo = upload(url, path)

        def segment(_: int) -> str:
            return call(url, "segment", [photo, 0.5])[0]  # no session_hash: each call is a new session

        with ThreadPoolExecutor(2) as pool:
            assert set(pool.map(segment, range(5))) == {"complete"}  # warm: lazy imports, caches
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                assert set(pool.map(segment, range(SESSIONS))) == {"complete"}
                gc.collect()
                growth = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
    finally:
        demo.close()
    print(f"heap growth after {SESSIONS} new sessions: {growth / SESSIONS / 1024:.0f} KB a session")
    assert growth < SESSIONS * SESSION_KEPT_KB * 1024


def test_views_are_bounded_in_bytes_and_age() -> None:
    """The opacity slider's store keeps views compressed (the mask exactly), drops the oldest beyond its bytes and
    any past its age, and finds nothing under a key it did not give."""
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    mask = (rgb[..., 1] // 64).astype(np.uint8)
    views = RecentViews(max_bytes=1 << 30, ttl_s=3600)
    key = views.add((rgb, mask))
    photo, back = views.get(key)
    np.testing.assert_array_equal(back, mask)
    assert np.abs(photo.astype(int) - rgb).mean() < 3 and views.nbytes < (rgb.nbytes + mask.nbytes) / 4
    one = views.nbytes
    few = RecentViews(max_bytes=3 * one, ttl_s=3600)
    keys = [few.add((rgb, mask)) for _ in range(5)]
    assert len(few) == 3 and few.get(keys[0]) is None and few.get(keys[-1]) is not None
    old = RecentViews(max_bytes=1 << 30, ttl_s=0.05)
    key = old.add((rgb, mask))
    time.sleep(0.1)
    assert old.get(key) is None and len(old) == 0
    assert views.get("0" * 32) is None and views.get(["not", "a", "key"]) is None
