from decimal import Decimal

import pytest

from execution.models import Action, ActionState
from lifecycle.models import PositionState, Trade
from lifecycle.services import (
    position_apply_close_fill,
    position_begin_close,
    position_close_failed,
    position_open,
    position_request_close,
    position_transition,
)
from tradingsite.errors import InvalidStateTransition

pytestmark = pytest.mark.django_db


def _open(strategy, side="long", qty="2", price="100", fee="0.2"):
    return position_open(strategy=strategy, symbol="ETH/USDT:USDT", side=side,
                         quantity=Decimal(qty), entry_price=Decimal(price),
                         entry_fee=Decimal(fee))


def test_opening_records_an_event_and_starts_open(strategy):
    position = _open(strategy)
    assert position.state == PositionState.OPEN
    assert position.peak_price == position.trough_price == Decimal("100")
    assert list(position.events.values_list("kind", "to_state")) == [("opened", "OPEN")]


def test_opening_twice_with_the_same_fill_key_opens_one_position(strategy):
    kwargs = dict(strategy=strategy, symbol="X", side="long", quantity=Decimal(1),
                  entry_price=Decimal(10), fill_key="entry-1:1")
    assert position_open(**kwargs).pk == position_open(**kwargs).pk


def test_a_stale_transition_is_refused_and_changes_nothing(strategy):
    position = _open(strategy)
    stale = type(position).objects.get(pk=position.pk)
    position_transition(position, to_state="WARNING", reason="timeout")
    with pytest.raises(InvalidStateTransition, match="no longer OPEN"):
        position_transition(stale, to_state="WARNING", reason="timeout")
    assert position.events.filter(kind="transition").count() == 1


def test_long_close_in_two_partial_fills_writes_the_trade(strategy):
    position = _open(strategy)
    position_begin_close(position, reason="manual", actor="operator")
    assert position_apply_close_fill(position, fill_key="c:1", quantity=Decimal("0.5"),
                                     price=Decimal("110"), fee=Decimal("0.05")) is None
    assert position.state == PositionState.CLOSING and position.quantity == Decimal("1.5")
    trade = position_apply_close_fill(position, fill_key="c:2", quantity=Decimal("1.5"),
                                      price=Decimal("90"), fee=Decimal("0.15"))
    # exit value 55 + 135 = 190 against 200 entry → gross -10; fees 0.2 + 0.05 + 0.15 = 0.4
    assert trade.pnl == Decimal("-10.4")
    assert trade.exit_price == Decimal("95")
    assert trade.fees == Decimal("0.4")
    assert trade.pnl_percent == Decimal("-5.2")
    assert trade.exit_reason == "manual"
    assert position.state == PositionState.CLOSED and position.quantity == 0
    # a redelivered fill is a no-op
    assert position_apply_close_fill(position, fill_key="c:2", quantity=Decimal("1.5"),
                                     price=Decimal("90")) == trade
    assert Trade.objects.count() == 1


def test_short_close_profit(strategy):
    position = _open(strategy, side="short", qty="1", price="100", fee="0")
    position_begin_close(position, reason="timeout", actor="timeout")
    trade = position_apply_close_fill(position, fill_key="s:1", quantity=Decimal(1),
                                      price=Decimal("80"), fee=Decimal("0.1"))
    assert trade.pnl == Decimal("19.9")
    assert trade.exit_reason == "timeout"


def test_a_failed_close_returns_the_position_to_its_time_state(strategy):
    position = _open(strategy)
    position_begin_close(position, reason="risk", actor="risk")
    position_close_failed(position, reason="exchange rejected", actor="execution")
    assert position.state == PositionState.OPEN
    assert position.close_reason == ""


def test_one_open_close_action_whoever_asks(strategy):
    position = _open(strategy)
    first, created = position_request_close(position=position, reason="timeout", actor="timeout")
    second, created_again = position_request_close(position=position, reason="risk", actor="risk")
    assert created and not created_again and first.pk == second.pk
    assert Action.objects.filter(position=position, state=ActionState.PENDING).count() == 1


def test_a_new_close_after_a_failed_one_is_queued_even_at_the_same_instant(strategy):
    import time_machine

    with time_machine.travel("2026-03-02 10:00:00+00:00", tick=False):
        position = _open(strategy)
        first, _ = position_request_close(position=position, reason="manual", actor="op")
        Action.objects.filter(pk=first.pk).update(state=ActionState.FAILED)
        second, created = position_request_close(position=position, reason="manual", actor="op")
    assert created and second.pk != first.pk
    assert (first.idempotency_key, second.idempotency_key) == (
        f"close:{position.pk}:0", f"close:{position.pk}:1")
