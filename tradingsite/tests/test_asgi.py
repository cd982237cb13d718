"""The ASGI entry point's HTTP handler: Django's middleware chain in one thread hop."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref import sync
from django.core.handlers.asgi import ASGIHandler

from tradingsite.asgi import OneHopASGIHandler


def _request(handler: Any, path: str) -> tuple[dict, int]:
    """One GET through ``handler``; (the response start message, thread hops it took)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"127.0.0.1")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    inbox = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []
    hops = 0
    real_call = sync.SyncToAsync.__call__

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real_call(self, *args, **kwargs)

    async def receive() -> dict:
        if inbox:
            return inbox.pop(0)
        await asyncio.Event().wait()  # no disconnect while the response is made
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    sync.SyncToAsync.__call__ = counted
    try:
        asyncio.run(handler(scope, receive, send))
    finally:
        sync.SyncToAsync.__call__ = real_call
    return sent[0], hops


def test_a_request_crosses_to_its_thread_a_few_times_not_once_per_middleware(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    start, hops = _request(OneHopASGIHandler(), "/api/no-such-route/")
    stock_start, stock_hops = _request(ASGIHandler(), "/api/no-such-route/")

    headers = {name.lower(): value for name, value in start["headers"]}
    assert start["status"] == stock_start["status"] == 404
    assert headers[b"content-type"] == b"application/json"  # the outermost middleware ran
    assert b"content-security-policy" in headers and headers[b"x-frame-options"] == b"DENY"
    assert hops == 3  # request started, the whole chain with the view, response closed
    assert stock_hops >= 10  # Django's async mode: in and out around each middleware (15 on 5.2)
