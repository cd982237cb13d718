"""The live-event outbox: how events of other processes reach the embedded default's dashboards.

With the in-memory channel layer an event only reaches websockets of the process that
sends it. A process that serves no dashboards — ``manage.py halt_trading``, a shell, a
second process without Redis — therefore writes its events to the ``LiveEvent`` table
(``outbox_write``, called by ``live.send_many``), and every process serving dashboards
relays that table to its channel layer while a dashboard is connected to it
(``relay_start``, from the websocket consumer): every ``RELAY_INTERVAL_SECONDS`` it
takes the waiting rows oldest first, deleting them in the same statement
(``DELETE … RETURNING``, so two relaying processes never send the same row), and sends
them to the live group in order. An event older than ``MAX_AGE_SECONDS`` is dropped
unsent: a page opened since then read the state it describes, and reads it again when
its websocket reconnects. ``outbox_prune`` (beat, every minute) removes what no relay
took.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.db import close_old_connections, connection, connections
from django.utils import timezone

from tradingsite.models import LiveEvent

RELAY_INTERVAL_SECONDS = 0.2
MAX_AGE_SECONDS = 60.0
RELAY_BATCH = 500

log = logging.getLogger(__name__)


def outbox_write(events: list[tuple[str, str]]) -> None:
    """Store ``(event, payload as JSON text)`` pairs for the relay; never raises."""
    now = timezone.now()
    try:
        LiveEvent.objects.bulk_create([LiveEvent(created_at=now, event=event, payload=text)
                                       for event, text in events])
    except Exception:  # the dashboards lose a hint; trading must not fail over it
        log.exception("could not write %d live event(s) to the outbox", len(events))


def outbox_take(*, limit: int = RELAY_BATCH, now: datetime | None = None
                ) -> list[tuple[str, Any]]:
    """Remove the oldest waiting events and return the fresh ones, oldest first.

    Only rows this call deleted are returned: another relay deleting the same rows
    concurrently gets the others, never the same ones.
    """
    ids = list(LiveEvent.objects.order_by("id").values_list("id", flat=True)[:limit])
    if not ids:
        return []
    table = connection.ops.quote_name(LiveEvent._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({marks}) "
                       "RETURNING id, created_at, event, payload", ids)
        rows = cursor.fetchall()
    oldest = (now or timezone.now()) - timedelta(seconds=MAX_AGE_SECONDS)
    taken = []
    for _, created_at, event, payload in sorted(rows, key=lambda row: row[0]):
        created = _as_datetime(created_at)
        if created is not None and created < oldest:
            continue
        try:
            taken.append((event, json.loads(payload)))
        except ValueError:
            log.error("live event %r in the outbox is not JSON; dropped", event)
    if len(taken) < len(rows):
        log.info("dropped %d live event(s) older than %.0f s", len(rows) - len(taken),
                 MAX_AGE_SECONDS)
    return taken


def _as_datetime(value: Any) -> datetime | None:
    """A ``created_at`` read by a raw cursor (SQLite returns text)."""
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def outbox_prune(*, now: datetime | None = None) -> int:
    """Delete events no relay took within ``MAX_AGE_SECONDS``; returns how many."""
    oldest = (now or timezone.now()) - timedelta(seconds=MAX_AGE_SECONDS)
    return LiveEvent.objects.filter(created_at__lt=oldest).delete()[0]


def _take_in_thread() -> list[tuple[str, Any]]:
    close_old_connections()  # a connection the database dropped is replaced, not reused
    return outbox_take()


class _Relay:
    """The relay of one event loop: a task, and one thread for its database reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-outbox")
        self.task = loop.create_task(self._run(), name="live-outbox-relay")

    async def relay_once(self, layer: Any) -> int:
        """Send what waits in the outbox to the live group; returns how many events."""
        from tradingsite.live import LIVE_GROUP, live_message

        events = await self.loop.run_in_executor(self.thread, _take_in_thread)
        for event, payload in events:
            await layer.group_send(LIVE_GROUP, live_message(event, payload))
        return len(events)

    async def _run(self) -> None:
        layer = get_channel_layer()
        while True:
            try:
                sent = await self.relay_once(layer)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database or layer hiccup: try again on the next round
                log.exception("live outbox relay failed; retrying")
                sent = 0
            await asyncio.sleep(0 if sent >= RELAY_BATCH else RELAY_INTERVAL_SECONDS)

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.loop.run_in_executor(self.thread, connections.close_all)
        self.thread.shutdown(wait=False)


_relays: dict[asyncio.AbstractEventLoop, _Relay] = {}


def relay_start(loop: asyncio.AbstractEventLoop) -> None:
    """Relay the outbox on ``loop`` (the loop the dashboards' websockets run on)."""
    relay = _relays.get(loop)
    if relay is None or relay.task.done():
        _relays[loop] = _Relay(loop)


async def relay_stop(loop: asyncio.AbstractEventLoop) -> None:
    relay = _relays.pop(loop, None)
    if relay is not None:
        await relay.stop()
