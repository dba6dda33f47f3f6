"""The app started as a person starts it: `python app.py ...` in a subprocess, on a free port.

The one way the tests (tests/test_app.py through gradio_client, tests/test_app_browser.py in Chromium) and
bench/bench_app.py start the app.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """`python app.py ARGS` in a subprocess, its output in the file ``log``.

    The port is a free one, passed as ``--port`` or, with ``port_from_env``, as GRADIO_SERVER_PORT. ``env`` adds to
    this process's environment (gradio's analytics are turned off).
    """

    def __init__(
        self, args: Sequence[str], log: Path, env: Mapping[str, str] | None = None, port_from_env: bool = False
    ) -> None:
        port = free_port()
        environ = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        if port_from_env:
            environ["GRADIO_SERVER_PORT"] = str(port)
        else:
            args = [*args, "--port", str(port)]
        self.url = f"http://127.0.0.1:{port}/"
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "app.py", *args], cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
            )

    def wait(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """The page's URL once it is served; RuntimeError, with the log, if the app exits or is not up in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return self.url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"app.py did not serve {self.url} within {timeout_s} s:\n{self.log.read_text()}")

    def exit_status(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """Wait for the app to stop by itself (as it does on a checkpoint it cannot load); its exit status."""
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Terminate the app (kill it if it does not stop within 30 s)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
