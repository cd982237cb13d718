"""The embedded default as a user runs it: ``manage.py runplatform`` in its own process.

Runs on a temporary SQLite database with the in-memory broker; in the PostgreSQL +
Redis pass the same process uses the Redis broker and channel layer instead.
"""

import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from conftest import redis_url

MANAGE = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
START_DEADLINE_SECONDS = 60
STOP_DEADLINE_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Site:
    env: dict[str, str]
    admin_password: str


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    """A migrated SQLite database of its own with the demo data; Redis when this pass has it."""
    tmp = tmp_path_factory.mktemp("platform")
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", TRADING_ENV="development",
               DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", VAR_DIR=str(tmp / "var"),
               STATE_DIR=str(tmp / "state"), PYTHONUNBUFFERED="1")
    if os.environ.get("REDIS_URL"):
        env.update(REDIS_URL=redis_url(), CHANNELS_PREFIX=f"runplatform-test-{os.getpid()}")
    subprocess.run([*MANAGE, "migrate", "--noinput", "-v", "0"], env=env, check=True,
                   timeout=120, cwd=settings.BASE_DIR)
    seeded = subprocess.run([*MANAGE, "seed_demo"], env=env, check=True, timeout=120,
                            cwd=settings.BASE_DIR, capture_output=True, text=True)
    password = re.search(r"Staff user 'admin' created with password: (\S+)", seeded.stdout)
    assert password, seeded.stdout
    return Site(env, password.group(1))


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the test sees the 302 itself


class Running:
    """A ``runplatform`` process, its collected output, and an HTTP client with cookies."""

    def __init__(self, env: dict[str, str], port: int, *args: str):
        self.port = port
        self.proc = subprocess.Popen([*MANAGE, "runplatform", "--port", str(port), *args], env=env,
                                     cwd=settings.BASE_DIR, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            _KeepRedirects, urllib.request.HTTPCookieProcessor(self.cookies))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        """(status, body) of a GET, or of a POST of ``form``; redirects are not followed."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data)
        try:
            with self._opener.open(request, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def get(self, path: str) -> int:
        return self.request(path)[0]

    def log_in(self, username: str, password: str) -> int:
        self.get("/admin/login/")
        token = next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")
        return self.request("/admin/login/", {"csrfmiddlewaretoken": token, "username": username,
                                              "password": password, "next": "/admin/"})[0]

    def wait_until_serving(self, path: str) -> None:
        """Poll ``path`` until it answers 200; fail at the deadline or if the process exits."""
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                if self.get(path) == 200:
                    return
            except OSError:
                pass  # not listening yet
            try:
                code = self.proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"runplatform exited with {code} before serving:\n{self.output}")
        pytest.fail(f"{path} did not answer 200 within {START_DEADLINE_SECONDS} s:\n{self.output}")

    def finish(self) -> int:
        code = self.proc.wait(timeout=STOP_DEADLINE_SECONDS)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def running(site):
    platform = Running(site.env, _free_port())
    yield platform
    platform.kill()


@pytest.mark.slow
def test_runplatform_serves_runs_tasks_and_stops_cleanly_on_sigterm(running, site):
    running.wait_until_serving("/admin/login/")
    out = running.output
    assert "  worker:        Celery worker, 4 threads" in out
    assert "  self-check:    task round trip through the worker in " in out
    assert "  beat:          Celery beat, DatabaseScheduler" in out
    assert f"  web:           daphne ASGI server on http://127.0.0.1:{running.port}/" in out
    assert running.get("/static/admin/css/base.css") == 200
    assert running.get("/admin/") == 302  # to the login page

    assert running.log_in("admin", site.admin_password) == 302
    status, body = running.request("/admin/lifecycle/position/")
    assert status == 200
    assert "XRP/USDT:USDT" in body

    running.proc.send_signal(signal.SIGTERM)
    assert running.finish() == 0, running.output
    tail = running.lines[running.lines.index("stopping (SIGTERM) ..."):]
    assert tail[1] == "  shutdown hook: operations.shutdown.platform_shutdown"  # see test_shutdown*
    assert [line for line in tail if line.startswith(("  beat", "  web", "  worker", "stopped"))
            ] == ["  beat: stopped", "  web: stopped", "  worker: stopped", "stopped cleanly"]


@pytest.mark.slow
def test_runplatform_refuses_a_taken_port_before_starting_anything(site):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        platform = Running(site.env, port)
        try:
            assert platform.finish() == 1
        finally:
            platform.kill()
    assert f"ERROR: web: cannot listen on 127.0.0.1:{port}: Address already in use" in platform.output
    assert "worker:" not in platform.output


def _trading_halted(site: Site) -> tuple[bool, str]:
    path = site.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        halted, reason = db.execute("SELECT trading_halted, halt_reason FROM "
                                    "tradingsite_platformstate WHERE id = 1").fetchone()
    return bool(halted), reason


@pytest.mark.slow
def test_stopping_a_web_only_instance_leaves_trading_running(site):
    """The issue's repro: SIGTERM to ``runplatform --no-worker --no-beat`` halted every process."""
    subprocess.run([*MANAGE, "resume_trading"], env=site.env, check=True, timeout=120,
                   cwd=settings.BASE_DIR, capture_output=True)
    web = Running(site.env, _free_port(), "--no-worker", "--no-beat")
    try:
        web.wait_until_serving("/admin/login/")
        assert ("    web-only instance: no reconciliation, trading state left as it is "
                "(recovery runs where the worker or beat runs)") in web.lines
        web.proc.send_signal(signal.SIGTERM)
        assert web.finish() == 0, web.output
    finally:
        web.kill()
    assert ("    web-only instance: trading left running (the halting shutdown runs where the "
            "worker or beat runs, or with shutdown_platform --run-here)") in web.lines
    assert "stopped cleanly" in web.lines
    assert _trading_halted(site) == (False, "")
