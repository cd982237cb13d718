"""The live-event outbox: events of a process that serves no dashboard reach the one that does."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from tradingsite import live, live_outbox
from tradingsite.asgi import application
from tradingsite.live_outbox import MAX_AGE_SECONDS, outbox_prune, outbox_take, outbox_write
from tradingsite.models import LiveEvent

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ORIGIN = (b"origin", b"http://127.0.0.1")
HOST = (b"host", b"127.0.0.1")


@pytest.fixture
def in_memory_layer():
    """A fresh in-memory layer for this test, as a process without Redis has."""
    previous = dict(channel_layers.backends)
    layer = InMemoryChannelLayer()
    channel_layers.backends["default"] = layer
    yield layer
    channel_layers.backends.clear()
    channel_layers.backends.update(previous)


@pytest.fixture
def not_the_platform(monkeypatch):
    """This process serves no dashboard (a management command, a shell)."""
    monkeypatch.setattr(live._dashboards, "served_here", False)


@pytest.mark.django_db
def test_a_process_without_dashboards_writes_its_events_to_the_outbox(in_memory_layer,
                                                                      not_the_platform):
    live.send_many([("trading.halted", {"reason": "maintenance", "n": 1}),
                    ("trading.resumed", {"n": 2})])
    rows = list(LiveEvent.objects.values_list("event", "payload"))
    assert rows == [("trading.halted", '{"reason": "maintenance", "n": 1}'),
                    ("trading.resumed", '{"n": 2}')]


@pytest.mark.django_db
def test_the_platform_process_never_writes_the_outbox(in_memory_layer, monkeypatch):
    monkeypatch.setattr(live._dashboards, "served_here", True)
    live.send_now("trading.halted", {"reason": "x"})
    assert LiveEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_redis_process_publishes_directly_and_writes_nothing(not_the_platform, monkeypatch):
    sent = []

    class _CrossProcessLayer:
        async def group_send(self, group, message):
            sent.append((group, message["event"]))

    monkeypatch.setattr(live, "get_channel_layer", lambda: _CrossProcessLayer())
    live.send_now("trading.halted", {"reason": "x"})
    live.flush()
    assert sent == [("live", "trading.halted")]
    assert LiveEvent.objects.count() == 0


@pytest.mark.django_db
def test_take_returns_the_events_oldest_first_and_removes_them():
    with time_machine.travel(NOW, tick=False):
        outbox_write([("a", '{"n": 1}'), ("b", '{"n": 2}')])
        outbox_write([("c", '{"n": 3}')])
        assert outbox_take() == [("a", {"n": 1}), ("b", {"n": 2}), ("c", {"n": 3})]
        assert LiveEvent.objects.count() == 0
        assert outbox_take() == []


@pytest.mark.django_db
def test_take_drops_events_older_than_the_max_age_and_bad_json():
    with time_machine.travel(NOW, tick=False) as clock:
        outbox_write([("stale", '{"n": 1}')])
        clock.shift(timedelta(seconds=MAX_AGE_SECONDS + 1))
        outbox_write([("broken", "{not json"), ("fresh", '{"n": 2}')])
        assert outbox_take() == [("fresh", {"n": 2})]
    assert LiveEvent.objects.count() == 0


@pytest.mark.django_db
def test_take_honours_its_limit_and_leaves_the_rest():
    with time_machine.travel(NOW, tick=False):
        outbox_write([(f"e{n}", f'{{"n": {n}}}') for n in range(5)])
        assert [event for event, _ in outbox_take(limit=2)] == ["e0", "e1"]
        assert [event for event, _ in outbox_take(limit=10)] == ["e2", "e3", "e4"]


@pytest.mark.django_db
def test_prune_deletes_only_what_no_relay_took_in_time():
    with time_machine.travel(NOW, tick=False) as clock:
        outbox_write([("old", "{}")])
        clock.shift(timedelta(seconds=MAX_AGE_SECONDS + 1))
        outbox_write([("new", "{}")])
        assert outbox_prune() == 1
    assert list(LiveEvent.objects.values_list("event", flat=True)) == ["new"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_relays_taking_at_once_never_send_the_same_event():
    outbox_write([(f"e{n}", "{}") for n in range(400)])
    start = threading.Barrier(2)
    taken: list[list[str]] = [[], []]

    def relay(slot: int) -> None:
        try:
            start.wait()
            while batch := outbox_take(limit=50):
                taken[slot].extend(event for event, _ in batch)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=relay, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not set(taken[0]) & set(taken[1])
    assert sorted(taken[0] + taken[1], key=lambda e: int(e[1:])) == [f"e{n}" for n in range(400)]


# --- the relay, in the process serving the dashboards ------------------------------------------


@pytest.fixture
def session_cookie(viewer_user) -> bytes:
    client = Client()
    client.force_login(viewer_user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _connect(cookie: bytes) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/health/",
                                         headers=[HOST, ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["event"] == "hello"
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_a_connected_dashboard_receives_another_process_events_in_order(
        in_memory_layer, session_cookie):
    communicator = await _connect(session_cookie)
    try:
        # What `halt_trading` in a shell leaves behind: rows, written by another process.
        await database_sync_to_async(outbox_write)([
            ("trading.halted", '{"trading_halted": true, "reason": "from a shell"}'),
            ("trading.resumed", '{"trading_halted": false}')])
        first = await communicator.receive_json_from(timeout=2)
        second = await communicator.receive_json_from(timeout=2)
        assert first == {"event": "trading.halted",
                         "payload": {"trading_halted": True, "reason": "from a shell"}}
        assert second == {"event": "trading.resumed", "payload": {"trading_halted": False}}
        assert await database_sync_to_async(LiveEvent.objects.count)() == 0
    finally:
        await communicator.disconnect()
        await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_the_relay_runs_while_a_dashboard_is_connected_and_stops_after_the_last(
        in_memory_layer, session_cookie):
    loop = asyncio.get_running_loop()
    first = await _connect(session_cookie)
    second = await _connect(session_cookie)
    relay = live_outbox._relays[loop]
    await first.disconnect()
    assert live_outbox._relays[loop] is relay and not relay.task.done()
    await second.disconnect()
    assert loop not in live_outbox._relays and relay.task.done()
    await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_events_of_the_serving_process_go_to_its_dashboards_loop(in_memory_layer,
                                                                        session_cookie):
    """A worker thread's event is handed to the websockets' loop, not to a loop of its own."""
    communicator = await _connect(session_cookie)
    try:
        worker = threading.Thread(target=live.send_now, args=("alert.raised", {"id": 7}))
        worker.start()
        await asyncio.to_thread(worker.join, 5)
        assert await communicator.receive_json_from(timeout=1) == {
            "event": "alert.raised", "payload": {"id": 7}}
        assert await database_sync_to_async(LiveEvent.objects.count)() == 0
    finally:
        await communicator.disconnect()
        await database_sync_to_async(connections.close_all)()


# --- waking the relay ---------------------------------------------------------------------------


@pytest.fixture
def state_dir(settings, tmp_path):
    settings.STATE_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db(transaction=True)
async def test_a_writer_wakes_the_relay_instead_of_waiting_for_its_poll(
        in_memory_layer, session_cookie, state_dir, monkeypatch):
    """With the poll pushed out to a minute, only the wake-up can deliver the event."""
    communicator = await _connect(session_cookie)
    try:
        monkeypatch.setattr(live_outbox, "RELAY_INTERVAL_SECONDS", 60.0)
        await asyncio.sleep(0.3)  # the relay's first look is over; now it waits on the poll
        registrations = list((state_dir / "live-relays").glob("*.port"))
        assert len(registrations) == 1
        await database_sync_to_async(outbox_write)([("trading.halted", '{"reason": "shell"}')])
        assert await communicator.receive_json_from(timeout=2) == {
            "event": "trading.halted", "payload": {"reason": "shell"}}
    finally:
        await communicator.disconnect()
        await database_sync_to_async(connections.close_all)()
    assert not list((state_dir / "live-relays").glob("*.port"))  # stopped: unregistered


def test_waking_tolerates_stale_and_broken_registrations(state_dir):
    folder = state_dir / "live-relays"
    folder.mkdir()
    (folder / "1-1.port").write_text("9")  # nothing listens there
    (folder / "2-2.port").write_text("not a port")
    assert live_outbox.relays_wake() == 1
    assert live_outbox.relays_wake() == 1  # a datagram to nobody is not an error


def test_a_starting_relay_forgets_the_registrations_of_dead_processes(state_dir):
    import os
    import subprocess
    import sys

    folder = state_dir / "live-relays"
    folder.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (folder / f"{gone}-1.port").write_text("9")
    (folder / f"{os.getpid()}-1.port").write_text("9")
    live_outbox._forget_dead_relays(folder)
    assert [entry.name for entry in folder.glob("*.port")] == [f"{os.getpid()}-1.port"]
