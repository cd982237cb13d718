"""The one way services publish live events to the dashboard (after commit)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

LIVE_GROUP = "live"
log = logging.getLogger(__name__)


def _jsonable(payload: Any) -> Any:
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def send_many(events: Iterable[tuple[str, Any]]) -> None:
    """Push events in order, in one event-loop round trip; never raises into the caller.

    Each ``async_to_sync`` call costs a loop (and, on Redis, a connection), so a
    burst of alerts goes out in one call rather than one call per event.
    """
    layer = get_channel_layer()
    messages = [{"type": "live.event", "event": event, "payload": _jsonable(payload)}
                for event, payload in events]
    if layer is None or not messages:
        return

    async def _send_all() -> None:
        for message in messages:
            await layer.group_send(LIVE_GROUP, message)

    try:
        async_to_sync(_send_all)()
    except Exception:  # a dead channel layer must not break trading
        log.exception("live push of %d event(s) failed", len(messages))


def send_now(event: str, payload: Any) -> None:
    """Push one event to every connected dashboard; never raises into the caller."""
    send_many([(event, payload)])


def broadcast(event: str, payload: Any) -> None:
    """Push ``event`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_now(event, payload))


def broadcast_many(events: list[tuple[str, Any]]) -> None:
    """Push several events, in order, once the current transaction commits."""
    if events:
        transaction.on_commit(lambda: send_many(events))
