"""The app in a real browser, one owner for the benchmark and the browser tests: how the server starts, how it is
known to be up, how Chromium is found and launched, and when the app's script is idle."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [  # --no-sandbox: Chromium refuses to run as root without it
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"  # the app's script has finished its run


def find_chromium() -> str | None:
    """A Chromium to drive: $CHROMIUM, then /usr/bin/chromium, then one on the PATH; None where there is none."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(home: Path, log_path: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run app.py`` on a free loopback port with ``home`` as its data home; yields (URL, process) at once
    (:func:`wait_healthy` waits for it to answer), output to ``log_path``; stops it on the way out."""
    port = free_port()
    env = dict(os.environ, NMNIST_DASHBOARD_HOME=str(home), PYTHONUNBUFFERED="1", **(env or {}))
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until ``/_stcore/health`` answers "ok"; RuntimeError if the server exits first, TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {timeout:.0f} s")
