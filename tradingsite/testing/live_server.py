"""A real ASGI server (daphne) in a subprocess, and the Chromium launch options."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STARTUP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)  # polling a starting subprocess, not a test wait
    raise RuntimeError(f"daphne did not answer {url} within {STARTUP_TIMEOUT_S} s")


@contextmanager
def asgi_server(env: dict[str, str], *, port: int | None = None,
                log_dir: Path | None = None) -> Iterator[str]:
    """Serve ``tradingsite.asgi`` with ``env`` layered on this environment; yield its URL."""
    port = port or free_port()
    log_dir = log_dir or ROOT / "var" / "browser"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"daphne-{port}.log"
    full_env = {**os.environ, **env}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "tradingsite.asgi:application"],
            cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{base}/login/", proc, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
