"""Deadlines, countdowns and counts, as the API, commands, admin and dashboard read them."""

from datetime import timedelta

import pytest

from lifecycle.models import Position
from lifecycle.selectors import (
    PositionTiming,
    position_state_counts,
    position_timing,
    strategy_limits,
    timeout_positions,
    tracked_positions,
    with_deadlines,
)
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import ActionFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def test_deadlines_follow_each_strategys_limits_in_one_query(strategy,
                                                             django_assert_num_queries):
    fast = StrategyFactory(name="fast", account=strategy.account, live_trading={
        "lifecycle": {"warningThresholdMinutes": 60, "maxHoldingTimeMinutes": 90}})
    slow = PositionFactory(strategy=strategy, opened_at=T0)
    quick = PositionFactory(strategy=fast, opened_at=T0)
    limits = strategy_limits()
    with django_assert_num_queries(1):
        rows = {p.pk: (p.warning_due_at, p.timeout_due_at)
                for p in with_deadlines(Position.objects.all(), limits)}
    assert rows == {slow.pk: (T0 + timedelta(minutes=180), T0 + timedelta(minutes=240)),
                    quick.pk: (T0 + timedelta(minutes=60), T0 + timedelta(minutes=90))}


def test_tracked_positions_are_held_ones_most_urgent_first_with_their_close_action(strategy):
    later = PositionFactory(strategy=strategy, opened_at=T0 + timedelta(minutes=30))
    sooner = PositionFactory(strategy=strategy, opened_at=T0, state="CLOSING")
    PositionFactory(strategy=strategy, opened_at=T0, state="CLOSED", closed_at=T0)
    action = ActionFactory(position=sooner)
    rows = list(tracked_positions())
    assert [p.pk for p in rows] == [sooner.pk, later.pk]
    assert (rows[0].close_action_id, rows[0].close_action_state) == (action.pk, "pending")
    assert rows[1].close_action_id is None


def test_timeout_positions_are_the_warned_critical_and_closing_ones(strategy):
    kept = [PositionFactory(strategy=strategy, opened_at=T0, state=s)
            for s in ("WARNING", "CRITICAL", "CLOSING")]
    PositionFactory(strategy=strategy, opened_at=T0)
    assert sorted(p.pk for p in timeout_positions()) == sorted(p.pk for p in kept)


def test_state_counts_include_zeros(strategy):
    PositionFactory.create_batch(2, strategy=strategy)
    PositionFactory(strategy=strategy, state="CRITICAL")
    assert position_state_counts() == {"OPEN": 2, "WARNING": 0, "CRITICAL": 1, "CLOSING": 0}
    assert position_state_counts(["CLOSED"]) == {"CLOSED": 0}


def test_timing_is_signed_and_a_closed_position_has_no_countdown(strategy):
    PositionFactory(strategy=strategy, opened_at=T0)
    PositionFactory(strategy=strategy, opened_at=T0, state="CLOSED",
                    closed_at=T0 + timedelta(minutes=75))
    held, closed = with_deadlines(Position.objects.order_by("-state"))
    at = T0 + timedelta(minutes=200)
    assert position_timing(held, at) == PositionTiming(200.0, -20.0, 40.0)
    assert position_timing(held, at).minutes_past_warning == 20.0
    timing = position_timing(closed, at)
    assert (timing.age_minutes, timing.minutes_to_warning, timing.minutes_past_timeout) == (
        75.0, None, None)
