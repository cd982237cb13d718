"""Real Celery processes for the scale-out test: workers and beat as separate programs.

Each process gets the test's database and a dedicated Redis broker through its
environment, exactly as a production machine would; its output goes to a log file
whose tail is shown when the test fails. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings

from tradingsite.celery import app as celery_app

POLL_SECONDS = 0.2


def database_url(settings_dict: dict[str, Any]) -> str:
    """The ``DATABASE_URL`` of the database this test runs on (pytest-django's test database)."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def neighbour_redis_db(url: str) -> str:
    """``url`` with the next database number: a broker apart from the test's own Redis db."""
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(number + 1) % 16}"))


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``condition`` every 0.2 s until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g} s")
        time.sleep(POLL_SECONDS)


@dataclass
class CeleryProcesses:
    """Workers and beat started from this test, stopped (then killed) at the end."""

    env: dict[str, str]
    logs: Path
    started: list[tuple[str, subprocess.Popen, Path]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tradingsite", *args],
            cwd=settings.BASE_DIR, env=self.env, stdout=log.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append((name, process, log))
        return process

    def worker(self, name: str, *, pool: str, concurrency: int, queues: list[str]) -> None:
        self.start(name, "worker", "--pool", pool, "-c", str(concurrency), "-Q", ",".join(queues),
                   "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "warning")

    def beat(self, schedule_file: Path) -> None:
        self.start("beat", "beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                   "--max-interval", "1", "-s", str(schedule_file), "-l", "warning")

    def check_alive(self) -> None:
        for name, process, _ in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.tails()}")

    def tails(self, lines: int = 30) -> str:
        out = []
        for name, _, log in self.started:
            text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every process group (a warm shutdown), SIGKILL what is left at the deadline."""
        for _, process, _ in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, process, _ in self.started:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@contextmanager
def celery_processes(env: dict[str, str], logs: Path) -> Iterator[CeleryProcesses]:
    processes = CeleryProcesses(env, logs)
    try:
        yield processes
    finally:
        processes.stop()


@contextmanager
def publishing_to(broker_url: str) -> Iterator[None]:
    """Send this process's task messages to ``broker_url`` (the workers' broker).

    The app's connection and producer pools (and the control mailbox's) are dropped, as after
    a fork, so the next message opens a connection to the new broker; the old broker is
    restored after.
    """
    def drop_pools() -> None:
        celery_app._after_fork()
        # The control mailbox caches the producer pool it first used (kombu's cached_property):
        # after an in-process worker has replied through it, pings would still go to the old
        # broker and no worker on the new one would ever answer.
        celery_app.control.mailbox.__dict__.pop("producer_pool", None)

    previous = celery_app.conf.broker_url
    drop_pools()
    celery_app.conf.broker_url = broker_url
    try:
        yield
    finally:
        drop_pools()
        celery_app.conf.broker_url = previous
