"""Closing: CLOSING from any held state, partial exit fills, the trade and its exit reason."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from lifecycle.models import Position, PositionEvent, PositionFill, PositionState, Trade
from lifecycle.services import (
    position_apply_close_fill,
    position_begin_close,
    position_close_failed,
    position_open,
    timeout_pass_run,
)
from lifecycle.tests.conftest import T0
from tradingsite.errors import InvalidStateTransition

pytestmark = pytest.mark.django_db

S = PositionState


def _open(strategy, side="long", qty="3", price="200", fee="0.3"):
    with time_machine.travel(T0, tick=False):
        return position_open(strategy=strategy, symbol="SOL/USDT:USDT", side=side,
                             quantity=Decimal(qty), entry_price=Decimal(price),
                             entry_fee=Decimal(fee))


def _fill(position, key, qty, price, fee="0", minutes=60):
    return position_apply_close_fill(position, fill_key=key, quantity=Decimal(qty),
                                     price=Decimal(price), fee=Decimal(fee),
                                     filled_at=T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize("reason", ["timeout", "risk", "manual", "shutdown", "signal"])
def test_the_trade_records_why_the_position_was_closed(strategy, reason):
    position = _open(strategy)
    position_begin_close(position, reason=reason, actor=f"{reason}-component")
    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, stored.close_reason, stored.close_requested_by) == (
        S.CLOSING, reason, f"{reason}-component")
    trade = _fill(position, f"{reason}:1", "3", "210", fee="0.63", minutes=95)
    assert trade.exit_reason == reason
    assert trade.holding_seconds == 95 * 60
    assert (trade.opened_at, trade.closed_at) == (T0, T0 + timedelta(minutes=95))
    # (210 − 200) × 3 = 30 gross; fees 0.3 entry + 0.63 exit
    assert trade.pnl == Decimal("29.07")
    assert trade.fees == Decimal("0.93")
    assert trade.pnl_percent == Decimal("4.845")
    assert PositionEvent.objects.filter(position=position, to_state=S.CLOSED).get().reason == (
        f"{reason}: closed")


def test_partial_fills_reduce_the_quantity_and_keep_the_position_closing(strategy):
    position = _open(strategy, side="short", qty="3", price="200", fee="0")
    position_begin_close(position, reason="risk", actor="risk")
    assert _fill(position, "o1:1", "1", "190", fee="0.1") is None
    assert _fill(position, "o1:2", "0.5", "195", fee="0.05") is None
    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, stored.quantity, stored.closed_quantity) == (
        S.CLOSING, Decimal("1.5"), Decimal("1.5"))
    assert stored.exit_value == Decimal("287.5")
    assert stored.exit_fees == Decimal("0.15")
    assert list(PositionEvent.objects.filter(position=position, kind="partial_fill")
                .values_list("details", flat=True)) == [
        {"quantity": "1", "price": "190", "remaining": "2.000000000000"},
        {"quantity": "0.5", "price": "195", "remaining": "1.500000000000"}]
    assert not Trade.objects.exists()
    trade = _fill(position, "o2:1", "1.5", "180", fee="0.15")
    # short: entry 600, exit 190 + 97.5 + 270 = 557.5 → gross +42.5, fees 0.3
    assert trade.pnl == Decimal("42.2")
    assert trade.exit_price == Decimal("185.8333333333")
    assert trade.quantity == Decimal("3")
    assert Position.objects.get(pk=position.pk).state == S.CLOSED
    assert PositionFill.objects.filter(position=position, kind="exit").count() == 3


def test_a_fill_larger_than_what_is_held_is_refused(strategy):
    position = _open(strategy, qty="1")
    position_begin_close(position, reason="manual", actor="op")
    with pytest.raises(ValueError, match="exit fill of 2"):
        _fill(position, "x:1", "2", "210")
    assert Position.objects.get(pk=position.pk).quantity == Decimal("1")


def test_exit_fills_apply_only_while_closing(strategy):
    position = _open(strategy)
    with pytest.raises(InvalidStateTransition, match="only while CLOSING"):
        _fill(position, "x:1", "1", "210")


def test_closing_applies_even_when_the_timeout_pass_moved_the_position_meanwhile(strategy):
    position = _open(strategy)  # the caller holds this OPEN copy
    with time_machine.travel(T0 + timedelta(minutes=245), tick=False):
        timeout_pass_run()
    assert Position.objects.get(pk=position.pk).state == S.CRITICAL
    position_begin_close(position, reason="timeout", actor="execution")
    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, position.state) == (S.CLOSING, S.CLOSING)
    assert PositionEvent.objects.filter(position=position, to_state=S.CLOSING).get().from_state == (
        S.CRITICAL)


def test_a_second_close_of_a_closing_position_is_refused(strategy):
    position = _open(strategy)
    stale = Position.objects.get(pk=position.pk)
    position_begin_close(position, reason="risk", actor="risk")
    with pytest.raises(InvalidStateTransition, match="no longer OPEN"):
        position_begin_close(stale, reason="manual", actor="op")
    assert PositionEvent.objects.filter(position=position, to_state=S.CLOSING).count() == 1


def test_a_failed_close_past_the_max_holding_time_returns_to_critical(strategy):
    position = _open(strategy)
    position_begin_close(position, reason="manual", actor="op")
    with time_machine.travel(T0 + timedelta(minutes=250), tick=False):
        position_close_failed(position, reason="InsufficientFunds", actor="execution")
    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, stored.close_reason, stored.closing_at) == (S.CRITICAL, "", None)
    assert stored.critical_at == T0 + timedelta(minutes=250)
