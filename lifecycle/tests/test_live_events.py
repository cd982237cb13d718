"""Lifecycle events reach the dashboard's Channels group only once the transaction commits."""

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from lifecycle.services import (
    position_apply_close_fill,
    position_begin_close,
    position_open,
    position_transition,
    timeout_pass_run,
)
from lifecycle.tests.conftest import T0
from tradingsite.live import LIVE_GROUP
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db(transaction=True)

SENTINEL = {"type": "test.sentinel"}


@pytest.fixture
def live_channel():
    """A channel in the dashboard's group, as a connected browser has; call it to read n messages.

    All n are read in one event loop (the Redis layer re-delivers a message whose
    receiving loop went away), each within a bound instead of waiting forever.
    """
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(LIVE_GROUP, channel)

    async def receive(count: int) -> list[dict]:
        return [await asyncio.wait_for(layer.receive(channel), timeout=10) for _ in range(count)]

    yield lambda count=1: async_to_sync(receive)(count)
    async_to_sync(layer.group_discard)(LIVE_GROUP, channel)


@pytest.fixture
def mark():
    """Push a sentinel to the group: whatever arrives before it was pushed before this point."""
    return lambda: async_to_sync(get_channel_layer().group_send)(LIVE_GROUP, SENTINEL)


def test_a_state_change_arrives_after_commit_and_not_before(strategy, live_channel, mark):
    position = PositionFactory(strategy=strategy, opened_at=T0)
    with transaction.atomic():
        position_transition(position, to_state="WARNING", reason="test", actor="tester")
        mark()  # still inside the transaction
    sentinel, message = live_channel(2)
    assert sentinel == SENTINEL, "nothing may be pushed before the commit"
    assert message["type"] == "live.event"
    assert message["event"] == "position.state_changed"
    payload = message["payload"]
    assert (payload["id"], payload["state"], payload["from_state"], payload["reason"],
            payload["strategy"], payload["symbol"]) == (
        position.pk, "WARNING", "OPEN", "test", strategy.name, "BTC/USDT:USDT")


def test_a_rolled_back_transition_pushes_nothing(strategy, live_channel, mark):
    position = PositionFactory(strategy=strategy, opened_at=T0)
    with pytest.raises(RuntimeError), transaction.atomic():
        position_transition(position, to_state="WARNING", reason="test", actor="tester")
        raise RuntimeError("worker died")
    mark()
    assert live_channel() == [SENTINEL]


def test_opened_and_closed_are_pushed_in_order(strategy, live_channel):
    with transaction.atomic():
        position = position_open(strategy=strategy, symbol="ETH/USDT:USDT", side="short",
                                 quantity=Decimal("2"), entry_price=Decimal("100"))
    position_begin_close(position, reason="signal", actor="bot")
    position_apply_close_fill(position, fill_key="close:1", quantity=Decimal("2"),
                              price=Decimal("90"))
    events = live_channel(4)
    assert [(m["event"], m["payload"]["state"]) for m in events] == [
        ("position.opened", "OPEN"), ("position.state_changed", "CLOSING"),
        ("position.state_changed", "CLOSED"), ("position.closed", "CLOSED")]
    assert (events[3]["payload"]["pnl"], events[3]["payload"]["exit_reason"]) == (
        "20.0000000000", "signal")


def test_the_timeout_pass_pushes_one_batched_event_per_step(strategy, live_channel, dispatched):
    positions = PositionFactory.create_batch(2, strategy=strategy, opened_at=T0)
    with time_machine.travel(T0 + timedelta(minutes=240), tick=False):
        timeout_pass_run()
        # Received on the same clock: the layer drops messages older than its expiry.
        # (The Redis layer orders a channel by send time, equal under a frozen clock.)
        messages = sorted(live_channel(2), key=lambda m: m["payload"]["from_state"] != "OPEN")
    ids = sorted(p.pk for p in positions)
    assert [m["event"] for m in messages] == ["positions.state_changed"] * 2
    assert [m["payload"] for m in messages] == [
        {"ids": ids, "from_state": "OPEN", "to_state": "WARNING", "actor": "timeout",
         "state_changed_at": "2026-03-02T12:00:00Z"},
        {"ids": ids, "from_state": "WARNING", "to_state": "CRITICAL", "actor": "timeout",
         "state_changed_at": "2026-03-02T12:00:00Z"}]
