"""A local HTTP endpoint that records what Apprise's ``json://`` delivers (tests, benchmarks).

``stop()`` closes its socket (the port refuses connections, as a dead endpoint does);
``start()`` listens again on the same port. Every JSON body received is kept, in order,
with the ``time.perf_counter()`` of its arrival.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
