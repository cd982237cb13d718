"""Fixtures of the notification tests: a real HTTP sink that Apprise's json:// delivers to.

The sink is a small threaded HTTP server on 127.0.0.1. ``stop()`` closes its socket (the
port refuses connections, as a dead endpoint does); ``start()`` listens again on the
same port. Every JSON body received is kept, in order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine

# Fixtures of the apps whose events are told (used by test_outbox.py).
from execution.tests.conftest import (  # noqa: F401
    _fresh_paper_exchanges,
    paper,
    paper_account,
    paper_strategy,
    sleep,
)
from lifecycle.tests.conftest import dispatched  # noqa: F401
from notifications.channels import forget_env_sync
from notifications.health import forget_cached_health
from risk.tests.conftest import live_events  # noqa: F401

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Sink:
    """An HTTP endpoint that records what it receives; it can be down or slow."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.received: list[dict] = []
        self.arrivals: list[float] = []  # time.perf_counter() of each message
        self.status = 200
        self.answer_after = 0.0  # seconds the server takes to answer (benchmarks only)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if sink.answer_after:
                    threading.Event().wait(sink.answer_after)  # the server's own latency
                if sink.status == 200:
                    with sink.lock:
                        sink.received.append(json.loads(body))
                        sink.arrivals.append(time.perf_counter())
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def titles(self) -> list[str]:
        return [message["title"] for message in self.received]


@pytest.fixture
def sink():
    server = Sink()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_channels():
    """NOTIFY_URLS is mirrored once per value and process: each test starts over."""
    forget_env_sync()
    forget_cached_health()
    yield
    forget_env_sync()
    forget_cached_health()


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def notify_to(settings):
    """``notify_to(sink.url, "severity>=WARNING:" …)``: NOTIFY_URLS for this test."""

    def configure(*items: str) -> None:
        settings.NOTIFY_URLS = ",".join(items)
        forget_env_sync()

    return configure
