"""Webhook secrets: issued once, stored as a SHA-256 digest, compared in constant time.

Bots and alert senders cannot add an authentication header, so the secret travels
in the body. A request is checked against a digest even when the name it gives is
unknown (``DUMMY_DIGEST``), so the time of an answer does not tell which part was
wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bots.models import SECRET_PREFIX_LENGTH

DUMMY_DIGEST = hashlib.sha256(b"no such connection").hexdigest()


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """``(secret, prefix, digest)``: the secret is shown once, the rest is stored.

    URL-safe characters only, and no ``{``/``}``: freqtrade formats every template
    string, and a brace would break its webhook.
    """
    secret = secrets.token_urlsafe(32)
    return secret, secret[:SECRET_PREFIX_LENGTH], secret_digest(secret)


def secret_matches(given: object, digest: str | None) -> bool:
    """Whether ``given`` is the secret of ``digest``, in time independent of both."""
    text = given if isinstance(given, str) else ""
    expected = digest or DUMMY_DIGEST
    matches = hmac.compare_digest(secret_digest(text), expected)
    return matches and digest is not None and isinstance(given, str) and bool(given)
