"""The one way services publish live events to the dashboards (after commit).

Every process publishes through ``send_many`` / ``broadcast``. Where the events go
depends on whether this process's channel layer reaches the dashboards:

* a cross-process layer (Redis): straight to it, through this process's publisher;
* the in-memory layer of the process that serves the dashboards (the embedded
  platform): to the event loop its websockets live on;
* the in-memory layer anywhere else (a management command, a shell, a second process
  without Redis): into the live-event outbox, a table that the process serving the
  dashboards relays to its channel layer as soon as the writer wakes it, at the latest
  every ``live_outbox.RELAY_INTERVAL_SECONDS`` (``tradingsite.live_outbox``).

So a ``halt_trading`` run from a shell reaches the browser in the embedded default as
it does with Redis.
"""

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


def live_message(event: str, payload: Any) -> dict[str, Any]:
    """The channel-layer message of one event (``payload`` already JSON-ready)."""
    return {"type": "live.event", "event": event, "payload": payload}


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
    """Push events in order; never raises into the caller (see the module doc for where)."""
    layer = get_channel_layer()
    encoded = [(event, json.dumps(payload, cls=DjangoJSONEncoder)) for event, payload in events]
    if layer is None or not encoded:
        return
    if not isinstance(layer, InMemoryChannelLayer):
        _process_publisher().submit(layer, [live_message(event, json.loads(text))
                                            for event, text in encoded])
        return
    loop = _dashboards.loop()
    if loop is None and not layer.groups.get(LIVE_GROUP):
        if not _dashboards.served_here:
            from tradingsite.live_outbox import outbox_write

            outbox_write(encoded)
        return  # the platform before its first dashboard connected: nobody to tell
    messages = [live_message(event, json.loads(text)) for event, text in encoded]
    try:
        if loop is None:  # a listener of this loop-less process (tests)
            async_to_sync(_send_all)(layer, messages)
        elif _running_in(loop):
            loop.create_task(_send_all(layer, messages))
        else:  # the loop the dashboards' websockets run on: woken at once, never waited for
            asyncio.run_coroutine_threadsafe(_send_all(layer, messages), loop)
    except Exception:  # e.g. a loop that closed meanwhile
        log.exception("live push of %d event(s) failed", len(messages))


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _Dashboards:
    """Which event loop of this process serves dashboards (in-memory layer), and how many.

    The in-memory layer's queues belong to the loop the consumers wait on; an event
    put there from another thread's loop would wait for that loop to wake up by
    itself (up to a second under daphne), so events are handed to the loop instead.
    """

    def __init__(self) -> None:
        self.served_here = False
        self._counts: dict[asyncio.AbstractEventLoop, int] = {}
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop | None:
        for loop in list(self._counts):
            if loop.is_running():
                return loop
        return None

    def connected(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Count a dashboard on ``loop``; True for the loop's first one."""
        with self._lock:
            self._counts[loop] = self._counts.get(loop, 0) + 1
            return self._counts[loop] == 1

    def disconnected(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Uncount a dashboard; True when ``loop`` has none left."""
        with self._lock:
            left = self._counts.get(loop, 1) - 1
            if left > 0:
                self._counts[loop] = left
                return False
            self._counts.pop(loop, None)
            return True


_dashboards = _Dashboards()


def serve_dashboards_here() -> None:
    """Mark this process as the one serving the dashboards (``runplatform``): with the
    in-memory layer its events never go to the outbox, which it relays itself."""
    _dashboards.served_here = True


async def dashboard_connected() -> None:
    """A dashboard's websocket joined in this process: start relaying the outbox here."""
    from tradingsite.live_outbox import relay_start

    loop = asyncio.get_running_loop()
    if _dashboards.connected(loop):
        relay_start(loop)


async def dashboard_disconnected() -> None:
    """The last dashboard of this loop left: nothing to relay to until the next one."""
    from tradingsite.live_outbox import relay_stop

    loop = asyncio.get_running_loop()
    if _dashboards.disconnected(loop):
        await relay_stop(loop)


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
