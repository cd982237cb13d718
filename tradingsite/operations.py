"""Operator actions requested through the API: one entry point, idempotent by key.

The actions themselves belong to the apps (``lifecycle.services.position_request_close``
queues a close); this module only resolves a repeated idempotency key to the action it
already created and routes a request to the app's service.
"""

from __future__ import annotations

from execution.models import Action, ActionKind, CloseReason
from lifecycle.models import Position
from lifecycle.services import position_request_close
from tradingsite.errors import ConflictError


def operator_action_request(*, kind: str, actor: str, position: Position,
                            reason: str = CloseReason.MANUAL,
                            idempotency_key: str | None = None,
                            note: str = "") -> tuple[Action, bool]:
    """Queue a close of ``position``; returns ``(action, created)``.

    A key seen before returns the action it created (whatever its state now), so a
    client retrying after a lost response never queues a second close. The same key
    for a different request is a conflict.
    """
    if idempotency_key:
        previous = Action.objects.filter(idempotency_key=idempotency_key).first()
        if previous is not None:
            if previous.kind != kind or previous.position_id != position.pk:
                raise ConflictError(
                    f"idempotency key {idempotency_key!r} was already used for "
                    f"{previous.get_kind_display().lower()} of position {previous.position_id}")
            return previous, False
    if kind not in ActionKind.closing():
        raise ValueError(f"{kind!r} is not a closing action")
    return position_request_close(position=position, reason=reason, actor=actor, kind=kind,
                                  idempotency_key=idempotency_key, note=note)
