"""A camera stream sent to a running app as gradio's page sends it, without a browser.

The page joins the queue with the stream event and its first frame (``queue/join``), posts every later frame to
``stream/EVENT_ID`` (the server keeps only the latest one while it segments), and reads each output from
``queue/data`` (server-sent events) until the server ends the stream at its time limit or the page closes it
(``stream/EVENT_ID/close``). Frames are JPEG files sent as data URLs, as the page's canvas makes them. The one way
tests/test_camera.py and bench/bench_camera.py stream to the app.
"""

import base64
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx


def data_url(jpeg: bytes) -> str:
    """A JPEG file as the data URL the page sends."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def stream_event(url: str, elem_id: str) -> tuple[int, int]:
    """(fn_index, component id) of the stream event of the component ``elem_id`` on the page at ``url``."""
    config = httpx.get(f"{url}config", timeout=30).raise_for_status().json()
    (component,) = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    (fn_index,) = [d["id"] for d in config["dependencies"] if [component, "stream"] in d["targets"]]
    return fn_index, component


@dataclass
class Streamed:
    """What came back from one stream: each output's arrival (seconds since the stream began), data and the
    seconds the server spent on its frame, the server's message when it ended the stream with an error, and how many
    frames were sent."""

    outputs: list[tuple[float, list, float]] = field(default_factory=list)
    error: str | None = None
    ended_by_server_s: float | None = None  # when the server ended the stream; None when the client closed it
    sent: int = 0


def stream(
    url: str, elem_id: str, frames: Sequence[bytes], inputs: Sequence[object], every_s: float, seconds: float
) -> Streamed:
    """Stream ``frames`` (JPEG files, in turn, looped) to the stream event of ``elem_id``, one every ``every_s``
    seconds, with the event's other ``inputs``, for ``seconds`` or until the server ends the stream."""
    fn_index, trigger = stream_event(url, elem_id)
    session = uuid.uuid4().hex[:11]
    result = Streamed()
    begin = time.monotonic()

    def body(i: int) -> dict:
        return {
            "data": [{"url": data_url(frames[i % len(frames)])}, *inputs],
            "event_data": None,
            "fn_index": fn_index,
            "trigger_id": trigger,
            "session_hash": session,
        }

    with httpx.Client(base_url=f"{url}gradio_api/", timeout=60) as client:
        ended = threading.Event()

        def listen() -> None:
            with client.stream("GET", "queue/data", params={"session_hash": session}) as events:
                for line in events.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    output = message.get("output") or {}
                    # A stream the client closed completes with its last output once more: not a new frame's.
                    new = message.get("msg") == "process_streaming" or not ended.is_set()
                    if message.get("msg") in ("process_streaming", "process_completed") and "data" in output and new:
                        result.outputs.append((time.monotonic() - begin, output["data"], output["duration"]))
                    if message.get("msg") == "process_completed":
                        if not message.get("success", True):
                            result.error = output.get("error")
                        if not ended.is_set():
                            result.ended_by_server_s = time.monotonic() - begin
                        return

        event_id = client.post("queue/join", json=body(0)).raise_for_status().json()["event_id"]
        listener = threading.Thread(target=listen)
        listener.start()
        result.sent = 1
        while time.monotonic() - begin < seconds and listener.is_alive():
            time.sleep(max(0.0, result.sent * every_s - (time.monotonic() - begin)))
            client.post(f"stream/{event_id}", json=body(result.sent))
            result.sent += 1
        ended.set()
        if listener.is_alive():
            client.post(f"stream/{event_id}/close")
        listener.join(timeout=60)
    return result
