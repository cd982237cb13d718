"""The one way services publish live events to the dashboard (after commit)."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

LIVE_GROUP = "live"
PUBLISHER_BACKLOG = 10_000  # bursts queued for the channel layer at most
log = logging.getLogger(__name__)


def _jsonable(payload: Any) -> Any:
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


async def _send_all(layer: Any, messages: list[dict]) -> None:
    """Hand a burst to the layer in order; a failure is logged, never raised."""
    try:
        for message in messages:
            await layer.group_send(LIVE_GROUP, message)
    except Exception:  # a dead channel layer must not break trading
        log.exception("live push of %d event(s) failed", len(messages))


class _Publisher:
    """One event loop per process that sends live events in order, off the caller's thread.

    Through ``async_to_sync`` every send builds an event loop, and on Redis a new
    connection pool with it: about 5 ms per event, paid by the trading thread. Here
    the loop and its connections live as long as the process; callers only queue.
    While the layer is unreachable the queue keeps the newest ``PUBLISHER_BACKLOG``
    bursts: the dashboard wants the present, and memory must not grow without end.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue | None = None
        self.dropped = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                       name="live-publisher")
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self._queue = asyncio.Queue(maxsize=PUBLISHER_BACKLOG)
        drain = self.loop.create_task(self._drain())
        ready.set()
        self.loop.run_forever()
        drain.cancel()
        self.loop.run_until_complete(asyncio.gather(drain, return_exceptions=True))
        self.loop.close()  # channels_redis closes this loop's connections here

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            layer, messages = await self._queue.get()
            try:
                await _send_all(layer, messages)
            finally:
                self._queue.task_done()

    def _enqueue(self, burst: tuple[Any, list[dict]]) -> None:
        assert self._queue is not None
        if self._queue.full():  # the oldest burst goes: the newest state matters most
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            if self.dropped % PUBLISHER_BACKLOG == 1:
                log.warning("live events backlog full: %d burst(s) dropped so far", self.dropped)
        self._queue.put_nowait(burst)

    def submit(self, layer: Any, messages: list[dict]) -> None:
        self.loop.call_soon_threadsafe(self._enqueue, (layer, messages))

    def flush(self, timeout: float) -> None:
        assert self._queue is not None
        asyncio.run_coroutine_threadsafe(self._queue.join(), self.loop).result(timeout)

    def stop(self, timeout: float) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


_publisher: _Publisher | None = None
_publisher_lock = threading.Lock()


def _forget_publisher_in_child() -> None:
    """A forked worker starts its own publisher (the parent's thread did not come along)."""
    global _publisher, _publisher_lock
    _publisher, _publisher_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_publisher_in_child)


def _process_publisher() -> _Publisher:
    """This process's publisher, started with the first event."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = _Publisher()
        return _publisher


def _wait_delivered(publisher: _Publisher | None, timeout: float) -> None:
    if publisher is None:
        return
    try:
        publisher.flush(timeout)
    except Exception:
        log.warning("live events still queued after %.1f s", timeout)


def flush(timeout: float = 5.0) -> None:
    """Wait until every queued live event has been handed to the channel layer."""
    _wait_delivered(_publisher, timeout)


def shutdown(timeout: float = 5.0) -> None:
    """Deliver what is queued, then stop the publisher and close its connections.

    Runs at exit; tests call it before closing a channel layer's pools themselves.
    The next event starts a new publisher.
    """
    global _publisher
    with _publisher_lock:
        publisher, _publisher = _publisher, None
    if publisher is not None:
        _wait_delivered(publisher, timeout)
        publisher.stop(timeout)


atexit.register(shutdown, 2.0)


def send_many(events: Iterable[tuple[str, Any]]) -> None:
    """Push events in order; never raises into the caller.

    On a cross-process layer (Redis) the events are queued for this process's
    publisher and the call returns at once. The in-process layer of the embedded
    default is served in the caller's event loop, as Channels expects: one
    ``async_to_sync`` call per burst.
    """
    layer = get_channel_layer()
    messages = [{"type": "live.event", "event": event, "payload": _jsonable(payload)}
                for event, payload in events]
    if layer is None or not messages:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            async_to_sync(_send_all)(layer, messages)
        except Exception:  # e.g. called from inside a running event loop
            log.exception("live push of %d event(s) failed", len(messages))
    else:
        _process_publisher().submit(layer, messages)


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
