"""Deadlines on time: the scheduler sleeps until the next warning or timeout is due."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from lifecycle.deadlines import DeadlineScheduler, next_deadline
from lifecycle.models import Position, PositionState
from lifecycle.services import position_open
from tradingsite.testing.factories import PositionFactory, StrategyFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WAIT = 10.0


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.mark.django_db
def test_the_next_deadline_is_the_earliest_warning_or_timeout_of_any_strategy(clock):
    default = StrategyFactory(name="default-limits")  # 180 / 240 minutes
    scalp = StrategyFactory(name="scalp", live_trading={
        "lifecycle": {"maxHoldingTimeMinutes": 90, "warningThresholdMinutes": 60}})
    assert next_deadline() is None
    PositionFactory(strategy=default, opened_at=NOW - timedelta(minutes=100))  # warns at +80
    assert next_deadline() == NOW + timedelta(minutes=80)
    PositionFactory(strategy=scalp, opened_at=NOW - timedelta(minutes=75),
                    state=PositionState.WARNING)  # times out at +15
    assert next_deadline() == NOW + timedelta(minutes=15)
    PositionFactory(strategy=scalp, opened_at=NOW - timedelta(minutes=89),
                    state=PositionState.CLOSING)  # closing: no deadline of its own
    PositionFactory(strategy=scalp, opened_at=NOW - timedelta(minutes=59, seconds=58))
    assert next_deadline() == NOW + timedelta(seconds=2)


@pytest.mark.django_db
def test_a_step_sleeps_until_the_deadline_then_moves_the_position_at_it(clock):
    strategy = StrategyFactory(name="steps")
    position = PositionFactory(strategy=strategy, opened_at=NOW - timedelta(minutes=179))
    scheduler = DeadlineScheduler(max_sleep=120)
    assert scheduler.step() == 60.0
    assert Position.objects.get(pk=position.pk).state == PositionState.OPEN
    clock.move_to(NOW + timedelta(seconds=60))
    # due now: warned, then sleep until the timeout an hour later (capped at max_sleep)
    assert scheduler.step() == 120.0
    moved = Position.objects.get(pk=position.pk)
    assert (moved.state, moved.warning_at) == (PositionState.WARNING, NOW + timedelta(seconds=60))
    assert (scheduler.passes, scheduler.lateness) == (1, [0.0])


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_is_woken_by_a_new_position_and_times_it_out_on_time():
    strategy = StrategyFactory(name="woken", live_trading={
        "lifecycle": {"maxHoldingTimeMinutes": 2, "warningThresholdMinutes": 1}})
    scheduler = DeadlineScheduler(max_sleep=30)
    scheduler.start()
    try:
        assert scheduler.wait_for(lambda: scheduler.passes == 0, WAIT)  # nothing to do: sleeps
        # the warning is due 0.3 s from now
        position = position_open(strategy=strategy, symbol="BTC/USDT:USDT", side="long",
                                 quantity=Decimal("1"), entry_price=Decimal("100"),
                                 opened_at=timezone.now() - timedelta(seconds=59.7))
        assert scheduler.wait_for(lambda: scheduler.passes >= 1, WAIT)
        moved = Position.objects.get(pk=position.pk)
        assert moved.state == PositionState.WARNING
        due = moved.opened_at + timedelta(minutes=1)
        assert timedelta(0) <= moved.warning_at - due < timedelta(seconds=2)
    finally:
        assert scheduler.stop()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_another_process_wakes_the_scheduler_through_redis(settings, redis_client):
    from conftest import redis_url
    from lifecycle.deadlines import CHANNEL

    settings.REDIS_URL = redis_url()
    strategy = StrategyFactory(name="woken-remotely", live_trading={
        "lifecycle": {"maxHoldingTimeMinutes": 2, "warningThresholdMinutes": 1}})
    scheduler = DeadlineScheduler(max_sleep=30)
    scheduler.start()
    try:
        assert scheduler.wait_for(lambda: scheduler.passes == 0, WAIT)  # asleep for 30 s
        # written by another process: no signal here, only its Redis message
        position = PositionFactory(strategy=strategy,
                                   opened_at=timezone.now() - timedelta(seconds=59.7))
        subscribers = redis_client.publish(CHANNEL, b"changed")
        assert subscribers == 1
        assert scheduler.wait_for(lambda: scheduler.passes >= 1, WAIT)
        assert Position.objects.get(pk=position.pk).state == PositionState.WARNING
    finally:
        assert scheduler.stop()
