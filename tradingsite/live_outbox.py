"""The live-event outbox: how events of other processes reach the embedded default's dashboards.

With the in-memory channel layer an event only reaches websockets of the process that
sends it. A process that serves no dashboards — ``manage.py halt_trading``, a shell, a
second process without Redis — therefore writes its events to the ``LiveEvent`` table
(``outbox_write``, called by ``live.send_many``), and every process serving dashboards
relays that table to its channel layer while a dashboard is connected to it
(``relay_start``, from the websocket consumer): it takes the waiting rows oldest first,
deleting them in the same statement (``DELETE … RETURNING``, so two relaying processes
never send the same row), and sends them to the live group in order. A relay looks when
a writer wakes it — each relay listens on a local UDP port it registers in
``STATE_DIR/live-relays/``, and a writer sends one datagram to every registered port once
its rows are committed — and every ``RELAY_INTERVAL_SECONDS`` in any case (a wake-up is a
hint: lost, it costs at most one interval). An event older than ``MAX_AGE_SECONDS`` is dropped
unsent: a page opened since then read the state it describes, and reads it again when
its websocket reconnects. ``outbox_prune`` (beat, every minute) removes what no relay
took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction
from django.utils import timezone

from tradingsite.models import LiveEvent

RELAY_INTERVAL_SECONDS = 0.2  # when no writer woke it
MAX_AGE_SECONDS = 60.0
RELAY_BATCH = 500

log = logging.getLogger(__name__)


def outbox_write(events: list[tuple[str, str]]) -> None:
    """Store ``(event, payload as JSON text)`` pairs for the relay and wake the relays once
    they are committed; never raises."""
    now = timezone.now()
    try:
        LiveEvent.objects.bulk_create([LiveEvent(created_at=now, event=event, payload=text)
                                       for event, text in events])
        transaction.on_commit(relays_wake)
    except Exception:  # the dashboards lose a hint; trading must not fail over it
        log.exception("could not write %d live event(s) to the outbox", len(events))


# --- waking the relays -------------------------------------------------------------------------

def _relays_dir() -> Any:
    return settings.STATE_DIR / "live-relays"


def relays_wake() -> int:
    """One datagram to every registered relay (stale registrations cost a lost datagram);
    returns how many were sent. Never raises: the relays also look on their own."""
    sent = 0
    try:
        entries = list(_relays_dir().glob("*.port"))
    except OSError:
        return 0
    if not entries:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for entry in entries:
            try:
                sock.sendto(b"!", ("127.0.0.1", int(entry.read_text().strip())))
                sent += 1
            except (OSError, ValueError):
                continue
    return sent


def _forget_dead_relays(folder: Any) -> None:
    """Registrations left by processes that died without stopping their relay."""
    for entry in folder.glob("*.port"):
        try:
            os.kill(int(entry.name.split("-", 1)[0]), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
        except (OSError, ValueError):
            continue


class _Wake(asyncio.DatagramProtocol):
    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.event.set()


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
    """The relay of one event loop: a task, one thread for its database reads, and a local
    UDP port writers wake it through."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-outbox")
        self.woken = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self.registration: Any = None
        self.task = loop.create_task(self._run(), name="live-outbox-relay")

    async def _listen(self) -> None:
        """Bind a local port and register it; without one the relay only polls."""
        try:
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _Wake(self.woken), local_addr=("127.0.0.1", 0))
            self.transport = transport
            port = transport.get_extra_info("sockname")[1]
            folder = _relays_dir()
            folder.mkdir(parents=True, exist_ok=True)
            _forget_dead_relays(folder)
            self.registration = folder / f"{os.getpid()}-{id(self)}.port"
            self.registration.write_text(str(port))
        except OSError:
            log.warning("live outbox relay: no wake-up port; polling every %.1f s",
                        RELAY_INTERVAL_SECONDS, exc_info=True)

    async def relay_once(self, layer: Any) -> int:
        """Send what waits in the outbox to the live group; returns how many events."""
        from tradingsite.live import LIVE_GROUP, live_message

        events = await self.loop.run_in_executor(self.thread, _take_in_thread)
        for event, payload in events:
            await layer.group_send(LIVE_GROUP, live_message(event, payload))
        return len(events)

    async def _run(self) -> None:
        layer = get_channel_layer()
        await self._listen()
        while True:
            self.woken.clear()
            try:
                sent = await self.relay_once(layer)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database or layer hiccup: try again on the next round
                log.exception("live outbox relay failed; retrying")
                sent = 0
            if sent >= RELAY_BATCH:
                continue
            try:
                await asyncio.wait_for(self.woken.wait(), RELAY_INTERVAL_SECONDS)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        if self.transport is not None:
            self.transport.close()
        if self.registration is not None:
            self.registration.unlink(missing_ok=True)
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
