"""Real servers in subprocesses — daphne alone, or the whole embedded platform — and the
Chromium launch options."""

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
from dataclasses import dataclass
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
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)  # polling a starting subprocess, not a test wait
    raise RuntimeError(f"server did not answer {url} within {STARTUP_TIMEOUT_S} s")


@dataclass
class ServerProcess:
    """A server subprocess: its base URL, and a way to stop it before the block ends."""

    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def server_process(command: list[str], env: dict[str, str], *, port: int, name: str,
                   log_dir: Path | None = None) -> Iterator[ServerProcess]:
    """Run ``command`` with ``env`` layered on this environment until ``/login/`` answers."""
    log_dir = log_dir or ROOT / "var" / "browser"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_ready(f"{server.url}/login/", proc, log)
        yield server
    finally:
        server.stop()


@contextmanager
def asgi_process(env: dict[str, str], *, port: int | None = None,
                 log_dir: Path | None = None) -> Iterator[ServerProcess]:
    """Serve ``tradingsite.asgi`` with daphne (the web part alone)."""
    port = port or free_port()
    with server_process([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                         "tradingsite.asgi:application"], env, port=port, name="daphne",
                        log_dir=log_dir) as server:
        yield server


@contextmanager
def asgi_server(env: dict[str, str], *, port: int | None = None,
                log_dir: Path | None = None) -> Iterator[str]:
    """Serve ``tradingsite.asgi`` with ``env`` layered on this environment; yield its URL."""
    with asgi_process(env, port=port, log_dir=log_dir) as server:
        yield server.url


@contextmanager
def platform_process(env: dict[str, str], *, port: int | None = None,
                     log_dir: Path | None = None) -> Iterator[ServerProcess]:
    """The embedded default: ``manage.py runplatform`` (web, worker and beat in one process)."""
    port = port or free_port()
    with server_process([sys.executable, "manage.py", "runplatform", "--host", "127.0.0.1",
                         "--port", str(port)], env, port=port, name="runplatform",
                        log_dir=log_dir) as server:
        yield server
