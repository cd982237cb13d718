"""Websocket safety: who may open the live channel, and what a client may send on it.

``SameOriginValidator`` (ASGI middleware) accepts a websocket only from this site's
own origin — scheme, host *and* port, as Django's CSRF check compares them — or from
an origin listed in ``CSRF_TRUSTED_ORIGINS``. ``InboundFrames`` checks each frame a
client sends: text only, at most ``MAX_FRAME_CHARS``, valid JSON, and at most
``BURST`` frames at once refilled at ``RATE_PER_SECOND``; a bad frame is answered with
an ``error`` event, never a traceback or a 1011 close.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}

# --- the origin check ----------------------------------------------------------------------


Origin = tuple[str, str, int]  # scheme, host (lower case), port


def parse_origin(value: str) -> Origin | None:
    """``https://Example.com`` → ``("https", "example.com", 443)``; ``None`` when unusable."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _site_origin(scope: dict[str, Any], headers: dict[bytes, bytes]) -> Origin | None:
    """This site's origin as the client reached it: the Host header and the (proxied) scheme."""
    try:
        host = headers.get(b"host", b"").decode("latin1")
    except UnicodeDecodeError:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    secure = scope.get("scheme") == "wss"
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name = proxy[0].removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
        secure = headers.get(name, b"").decode("latin1").split(",")[0].strip() == proxy[1]
    return parse_origin(f"{'https' if secure else 'http'}://{host}")


def _trusted(origin: Origin) -> bool:
    """An entry of ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` covers subdomains)."""
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, rest = entry.partition("://")
        wildcard = rest.startswith("*.")
        trusted = parse_origin(f"{scheme}://{rest[2:] if wildcard else rest}")
        if trusted is None or (trusted[0], trusted[2]) != (origin[0], origin[2]):
            continue
        if origin[1] == trusted[1] or (wildcard and origin[1].endswith("." + trusted[1])):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"origin")
    if raw is None:
        return False  # every browser sends one; a script must say where it comes from
    origin = parse_origin(raw.decode("latin1"))
    if origin is None:
        return False
    return origin == _site_origin(scope, headers) or _trusted(origin)


class SameOriginValidator:
    """Refuses (403 at the handshake) a websocket whose Origin is not this site's own."""

    def __init__(self, application: Callable) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


# --- frames from the client ------------------------------------------------------------------

MAX_FRAME_CHARS = 4096
BURST = 20
RATE_PER_SECOND = 2.0
# Dropped frames in a row (while rate limited) after which the connection is closed.
CLOSE_AFTER_DROPPED = 5 * BURST
RATE_LIMIT_CLOSE_CODE = 4429


@dataclass(frozen=True)
class Frame:
    """What to do with one inbound frame: use ``message``, answer ``error``, or ``close``."""

    message: Any = None
    error: dict[str, str] | None = None
    close: bool = False
    drop: bool = False


class InboundFrames:
    """The per-connection policy for frames a client sends (pure: the clock is injected)."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock if clock is not None else monotonic
        self.tokens = float(BURST)
        self.updated = self.clock()
        self.dropped = 0

    def _take_token(self) -> bool:
        now = self.clock()
        self.tokens = min(float(BURST), self.tokens + (now - self.updated) * RATE_PER_SECOND)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def read(self, text: str | None, data: bytes | None) -> Frame:
        if not self._take_token():
            self.dropped += 1
            if self.dropped >= CLOSE_AFTER_DROPPED:
                return Frame(close=True)
            if self.dropped == 1:  # one answer per burst: errors must not double the traffic
                return Frame(error=_error("rate_limited", f"more than {BURST} messages at once "
                                          f"or {RATE_PER_SECOND:g} per second; this one and "
                                          "the next are dropped"))
            return Frame(drop=True)
        self.dropped = 0
        if text is None:
            return Frame(error=_error("binary_frame", "only text frames with JSON are accepted"))
        if len(text) > MAX_FRAME_CHARS:
            return Frame(error=_error("too_large", f"a message is at most {MAX_FRAME_CHARS} "
                                                   f"characters, got {len(text)}"))
        try:
            return Frame(message=json.loads(text))
        except (ValueError, RecursionError):
            return Frame(error=_error("malformed", "not valid JSON"))


def _error(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail}
