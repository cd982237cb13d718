"""The one place that talks to Apprise: send a message to one URL, say what happened, masked.

Apprise logs what it does (status codes, server answers) and, in error messages, the
URL it tried, tokens included. Each call's own log lines (Apprise captures them per
call) become the attempt's ``detail``, masked with the channel's secrets before anyone
sees them; the ``apprise`` logger itself is kept off the console by the settings.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, unquote

MASK = "****"
SEND_TIMEOUT_SECONDS = 15.0  # one send, whatever the service's own timeouts


@cache
def _apprise() -> Any:
    """Apprise, imported on first use (≈0.3 s), not at every start."""
    import apprise

    return apprise


@dataclass(frozen=True)
class SendResult:
    ok: bool
    detail: str
    duration_ms: int


NOTIFY_TYPE = {"INFO": "info", "WARNING": "warning", "CRITICAL": "failure", "SUCCESS": "success"}


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its URL-quoted form) replaced by ``****``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret), unquote(secret)}:
            if len(form) >= 3:
                text = text.replace(form, MASK)
    return text


def send(url: str, *, title: str, body: str, severity: str, secrets: Iterable[str] = (),
         notify_type: str | None = None, timeout: float = SEND_TIMEOUT_SECONDS) -> SendResult:
    """Send one message to one Apprise URL; never raises, never shows a secret.

    ``secrets``: strings to mask in the detail (the channel's resolved placeholders and
    the parts of ``url`` Apprise itself considers secret, see ``secret_parts``).
    ``timeout`` bounds the whole call, whatever the service's own socket timeouts.
    """
    apprise = _apprise()
    secrets = [*secrets, url, *secret_parts(url)]
    started = time.perf_counter()
    lines: list[str] = []
    try:
        notifier = apprise.Apprise()
        if not notifier.add(url):
            ok, outcome = False, "Apprise does not accept this URL (unknown scheme or bad form)"
        else:
            result = notifier.notify(
                title=title, body=body, body_format=apprise.NotifyFormat.TEXT,
                notify_type=NOTIFY_TYPE.get(notify_type or severity, "info"),
                timeout=timeout, log_level=logging.INFO)
            ok = bool(result)
            outcome = "delivered" if ok else f"not delivered ({_status(result)})"
            lines = [f"{entry.level}: {entry.message}" for entry in _logs(result)
                     if not entry.message.startswith("Notifying ")]
    except Exception as exc:  # a plugin bug must not take the delivery pass down
        ok, outcome = False, f"{type(exc).__name__}: {exc}"
    duration_ms = int((time.perf_counter() - started) * 1000)
    detail = "; ".join([outcome, *lines[-8:]])  # the last lines say why; bounded
    return SendResult(ok=ok, detail=mask(detail, secrets)[:2000], duration_ms=duration_ms)


def _status(result: Any) -> str:
    """``failure``, ``timeout``…: the name of Apprise's result status."""
    status = getattr(result, "status", None)
    return str(getattr(status, "name", None) or "failure").lower()


def _logs(result: Any) -> list[Any]:
    try:
        return list(result.logs())
    except Exception:  # older result objects, or a capture that failed
        return []


_DELIMITERS = set("/:@?&=#")


def secret_parts(url: str) -> list[str]:
    """The parts of ``url`` Apprise masks when it prints it (tokens, passwords, keys).

    Apprise renders a URL twice, plainly and with privacy (``a...z`` or ``****`` in
    place of each secret); what the second replaces, widened to the surrounding
    delimiters, is secret. ``[]`` for a URL Apprise does not accept.
    """
    from difflib import SequenceMatcher

    apprise = _apprise()
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if not plugin:
            return []
        plain = plugin.url(privacy=False).split("?", 1)[0]
        private = plugin.url(privacy=True).split("?", 1)[0]
    except Exception:
        return []
    parts = []
    for tag, i1, i2, _, _ in SequenceMatcher(None, plain, private, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            while i1 > 0 and plain[i1 - 1] not in _DELIMITERS:
                i1 -= 1
            while i2 < len(plain) and plain[i2] not in _DELIMITERS:
                i2 += 1
            part = unquote(plain[i1:i2])
            if part:
                parts.append(part)
    return parts


_MASKED_TOKEN = re.compile(r"[^/:@?&=#]\.\.\.[^/:@?&=#]")


def private_url(url: str) -> str:
    """``url`` as Apprise prints it with privacy, secrets fully hidden, without its options."""
    apprise = _apprise()
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:
        plugin = None
    if not plugin:
        return "(a URL Apprise does not accept)"
    return _MASKED_TOKEN.sub(MASK, plugin.url(privacy=True).split("?", 1)[0])


def accepts(url: str) -> bool:
    """Whether Apprise understands ``url`` (scheme known, required parts present)."""
    apprise = _apprise()
    try:
        return bool(apprise.Apprise.instantiate(url, suppress_exceptions=True))
    except Exception:
        return False
