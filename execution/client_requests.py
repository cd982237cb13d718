"""Callers' idempotency keys: a retried request gets its first answer, a changed one a 409.

A key is its caller's own and lives in ``ClientRequest``, apart from the keys the
server builds, so no client can block a close the platform needs. One
``INSERT … ON CONFLICT DO NOTHING`` decides which request a key names: a concurrent
request with the same key waits for the first one's transaction, then reads the
request it recorded. Callers run the claim, the work and ``client_request_answer``
in one transaction, so a request that fails leaves its key free.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Model

from execution.models import Action, ClientRequest, ClientRequestScope, Order
from tradingsite.errors import RequestMismatch
from tradingsite.sql import insert_row


def canonical(value: Any) -> Any:
    """A JSON value that compares equal exactly when the request values are equal."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Model):
        return value.pk
    return value


def request_differences(first: Mapping[str, Any], given: Mapping[str, Any]
                        ) -> dict[str, tuple[Any, Any]]:
    """``{field: (first value, given value)}`` for every field whose values differ."""
    return {name: (first.get(name), given.get(name)) for name in sorted({*first, *given})
            if first.get(name) != given.get(name)}


def client_request_claim(*, caller: AbstractBaseUser, scope: ClientRequestScope, key: str,
                         request: Mapping[str, Any]) -> tuple[ClientRequest, bool]:
    """Claim ``key`` for ``request``: ``(record, True)`` the first time, else the earlier record.

    The earlier record is returned only for the same request (its answer is on
    ``record.action`` / ``record.order``); a different one raises ``RequestMismatch``
    naming the fields that differ. Must run inside the caller's transaction.
    """
    assert connection.in_atomic_block, "claim, work and answer belong to one transaction"
    body = {name: canonical(value) for name, value in request.items()}
    record = ClientRequest(caller=caller, scope=scope, key=key, request=body)
    if insert_row(record, ignore_conflicts=True):
        return record, True
    earlier = ClientRequest.objects.select_related("action", "order").get(
        caller=caller, scope=scope, key=key)
    differences = request_differences(earlier.request, body)
    if differences:
        raise RequestMismatch(f"idempotency key {key!r}", differences)
    return earlier, False


def client_request_answer(record: ClientRequest, *, action: Action | None = None,
                          order: Order | None = None) -> None:
    """Keep what the claimed request produced: a retry with the key gets it back."""
    record.action, record.order = action, order
    ClientRequest.objects.filter(pk=record.pk).update(action=action, order=order)
