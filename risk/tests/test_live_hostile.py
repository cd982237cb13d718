"""The live websocket against hostile clients: foreign origins, bad frames, floods.

The issue's repros: ``Origin: http://localhost:9999`` was accepted (the port was not
compared); a non-JSON frame closed the socket with 1011 and logged a traceback.
"""

from __future__ import annotations

import logging

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from tradingsite import websocket
from tradingsite.asgi import application
from tradingsite.websocket import BURST, CLOSE_AFTER_DROPPED, InboundFrames, origin_allowed

HOST = b"localhost:8000"


def _scope(origin: bytes | None, host: bytes = HOST, scheme: str = "ws",
           **headers: bytes) -> dict:
    pairs = [(b"host", host)] + ([(b"origin", origin)] if origin is not None else [])
    pairs += [(name.replace("_", "-").encode(), value) for name, value in headers.items()]
    return {"type": "websocket", "scheme": scheme, "headers": pairs}


# --- the origin: scheme, host and port -----------------------------------------------------


@pytest.mark.parametrize(("scope", "allowed"), [
    (_scope(b"http://localhost:8000"), True),
    (_scope(b"http://LOCALHOST:8000"), True),
    (_scope(b"http://localhost:9999"), False),           # the repro: another port
    (_scope(b"https://localhost:8000"), False),          # another scheme
    (_scope(b"http://localhost"), False),                # port 80 is another port
    (_scope(b"http://evil.example:8000"), False),        # another host
    (_scope(b"http://localhost:8000.evil.example"), False),
    (_scope(None), False),                               # no Origin at all
    (_scope(b"null"), False),
    (_scope(b"http://localhost:8000/path"), False),
    (_scope(b"http://localhost:99999"), False),          # not a port
    (_scope(b"http://127.0.0.1", host=b"127.0.0.1"), True),
    (_scope(b"http://127.0.0.1:80", host=b"127.0.0.1"), True),
    (_scope(b"http://evil.example", host=b"evil.example"), False),  # not in ALLOWED_HOSTS
    (_scope(b"https://localhost", host=b"localhost", scheme="wss"), True),
    (_scope(b"http://localhost", host=b"localhost", scheme="wss"), False),
])
def test_the_origin_must_be_this_sites_own(scope, allowed):
    assert origin_allowed(scope) is allowed


def test_behind_a_proxy_the_forwarded_scheme_counts(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = dict(x_forwarded_proto=b"https")
    assert origin_allowed(_scope(b"https://localhost", host=b"localhost", **proxied))
    assert not origin_allowed(_scope(b"http://localhost", host=b"localhost", **proxied))
    assert not origin_allowed(_scope(b"https://localhost", host=b"localhost"))


def test_csrf_trusted_origins_are_accepted_exactly(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com", "https://*.ops.example.com"]
    assert origin_allowed(_scope(b"https://dash.example.com"))
    assert origin_allowed(_scope(b"https://a.ops.example.com"))
    assert not origin_allowed(_scope(b"https://dash.example.com:8443"))
    assert not origin_allowed(_scope(b"http://dash.example.com"))
    assert not origin_allowed(_scope(b"https://ops.example.com.evil"))


# --- frames: size, JSON, rate -----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_frames_are_limited_and_refilled():
    clock = FakeClock()
    frames = InboundFrames(clock=clock)
    assert [frames.read('{"event": "ping"}', None).message for _ in range(BURST)] == [
        {"event": "ping"}] * BURST
    limited = frames.read('{"event": "ping"}', None)
    assert limited.error == {"code": "rate_limited", "detail": "more than 20 messages at once "
                             "or 2 per second; this one and the next are dropped"}
    assert frames.read('{"event": "ping"}', None).drop is True  # answered once only
    clock.now += 0.5  # one token back at 2 per second
    assert frames.read('{"event": "ping"}', None).message == {"event": "ping"}
    assert frames.read('{"event": "ping"}', None).error["code"] == "rate_limited"


def test_a_flood_closes_the_connection():
    frames = InboundFrames(clock=FakeClock())
    verdicts = [frames.read("{}", None) for _ in range(BURST + CLOSE_AFTER_DROPPED)]
    assert [v.close for v in verdicts].index(True) == BURST + CLOSE_AFTER_DROPPED - 1


@pytest.mark.parametrize(("text", "data", "error"), [
    ("not json{", None, {"code": "malformed", "detail": "not valid JSON"}),
    ("[" * 4000, None, {"code": "malformed", "detail": "not valid JSON"}),
    ('{"event": NaN', None, {"code": "malformed", "detail": "not valid JSON"}),
    ("x" * 4097, None, {"code": "too_large",
                        "detail": "a message is at most 4096 characters, got 4097"}),
    (None, b"\x00\xff", {"code": "binary_frame",
                         "detail": "only text frames with JSON are accepted"}),
])
def test_a_bad_frame_is_named(text, data, error):
    assert InboundFrames(clock=FakeClock()).read(text, data).error == error


# --- through the ASGI stack -----------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_layer():
    previous = dict(channel_layers.backends)
    channel_layers.backends["default"] = InMemoryChannelLayer()
    yield
    channel_layers.backends.clear()
    channel_layers.backends.update(previous)


@pytest.fixture
async def cookie(live_layer, viewer_user):
    def login() -> bytes:
        client = Client()
        client.force_login(viewer_user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    yield await database_sync_to_async(login)()
    await database_sync_to_async(connections.close_all)()


async def _open(cookie: bytes, origin: bytes = b"http://localhost:8000"
                ) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(application, "/ws/health/", headers=[
        (b"host", HOST), (b"origin", origin), (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    if connected:
        assert (await communicator.receive_json_from(timeout=5))["event"] == "hello"
    return communicator, connected


@pytestmark_db
async def test_origin_of_another_port_is_refused_at_the_handshake(cookie):
    _, connected = await _open(cookie, origin=b"http://localhost:9999")
    assert connected is False
    same, connected = await _open(cookie)
    assert connected is True
    await same.disconnect()


@pytestmark_db
async def test_bad_frames_get_an_error_and_the_socket_stays_open(cookie, caplog):
    caplog.set_level(logging.WARNING)
    communicator, _ = await _open(cookie)
    await communicator.send_to(text_data="not json{")
    assert await communicator.receive_json_from(timeout=5) == {
        "event": "error", "payload": {"code": "malformed", "detail": "not valid JSON"}}
    await communicator.send_to(text_data="x" * 100_000)
    assert await communicator.receive_json_from(timeout=5) == {
        "event": "error", "payload": {"code": "too_large",
                                      "detail": "a message is at most 4096 characters, "
                                                "got 100000"}}
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "binary_frame"
    await communicator.send_json_to({"event": "ping", "payload": 7})
    assert await communicator.receive_json_from(timeout=5) == {"event": "pong", "payload": 7}
    await communicator.disconnect()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytestmark_db
async def test_a_flooding_client_is_limited_then_disconnected(cookie, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(websocket, "monotonic", clock)
    communicator, _ = await _open(cookie)
    for n in range(BURST):
        await communicator.send_json_to({"event": "ping", "payload": n})
    assert [(await communicator.receive_json_from(timeout=5))["payload"]
            for _ in range(BURST)] == list(range(BURST))
    await communicator.send_json_to({"event": "ping", "payload": "over"})
    assert (await communicator.receive_json_from(timeout=5))["payload"]["code"] == "rate_limited"
    for _ in range(CLOSE_AFTER_DROPPED - 2):
        await communicator.send_json_to({"event": "ping"})
    assert await communicator.receive_nothing(timeout=0.1)  # dropped quietly
    await communicator.send_json_to({"event": "ping"})
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close",
                                                            "code": 4429}
    # What the ASGI server does after the app closed a socket: tell it the client is gone (its
    # dashboard bookkeeping and the outbox relay with its database connection stop then).
    await communicator.disconnect()
