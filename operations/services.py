"""Operator actions requested through the API: one entry point, idempotent by the caller's key.

The actions themselves belong to the apps (``lifecycle.services.position_request_close``
queues a close under a key the server builds); this module ties a caller's own
idempotency key to the action its request got (``execution.client_requests``).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from execution.client_requests import client_request_answer, client_request_claim
from execution.models import Action, ActionKind, ClientRequestScope
from lifecycle.models import Position
from lifecycle.services import position_request_close
from tradingsite.domain import CloseReason


def operator_action_request(*, kind: str, caller: AbstractBaseUser, position: Position,
                            reason: str = CloseReason.MANUAL,
                            idempotency_key: str | None = None,
                            note: str = "") -> tuple[Action, bool]:
    """Queue a close of ``position``; returns ``(action, created)``.

    A key seen before from the same caller returns the action its first request got
    (whatever its state now), so a retry after a lost response never queues a second
    close; the same key with another position, kind, reason or note is a
    ``RequestMismatch`` (409). Without a key, a repeated request gets the open close.
    """
    if kind not in ActionKind.closing():
        raise ValueError(f"{kind!r} is not a closing action")
    close = {"position": position, "reason": reason, "kind": kind, "note": note,
             "actor": caller.get_username()}
    if not idempotency_key:
        return position_request_close(**close)
    with transaction.atomic():
        record, fresh = client_request_claim(
            caller=caller, scope=ClientRequestScope.ACTION, key=idempotency_key,
            request={"kind": kind, "position": position, "reason": reason, "note": note})
        if not fresh:
            return record.action, False
        action, created = position_request_close(**close)
        client_request_answer(record, action=action)
    return action, created
