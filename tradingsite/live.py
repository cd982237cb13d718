"""The one way services publish live events to the dashboard (after commit)."""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

LIVE_GROUP = "live"
log = logging.getLogger(__name__)


def _jsonable(payload: Any) -> Any:
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


def send_now(event: str, payload: Any) -> None:
    """Push one event to every connected dashboard; never raises into the caller."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            LIVE_GROUP, {"type": "live.event", "event": event, "payload": _jsonable(payload)})
    except Exception:  # a dead channel layer must not break trading
        log.exception("live push of %s failed", event)


def broadcast(event: str, payload: Any) -> None:
    """Push ``event`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_now(event, payload))
