"""A position's life from entry fill to close, driven by holding-time limits.

Entries go in through the API, the workers place them on the paper exchange, beat's
timeout pass moves the positions, and the action queue closes them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, ActionState, Order, OrderStatus
from lifecycle.models import Position, PositionState, Trade
from tests.integration.conftest import BTC, START, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

TIMEOUTS = "lifecycle.tasks.check_timeouts"


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


def place_entry(operator, strategy, symbol=BTC, side="buy", quantity="0.2") -> Order:
    response = operator.post("/api/execution/orders/place", {
        "strategy": strategy.name, "symbol": symbol, "side": side, "quantity": quantity},
        content_type="application/json")
    assert response.status_code == 202, response.content
    return Order.objects.get(pk=response.json()["id"])


def events_of(position):
    return list(position.events.values_list("kind", "from_state", "to_state", "actor",
                                            "created_at"))


def test_an_entry_is_held_warned_timed_out_and_closed_with_exit_reason_timeout(
        platform, operator):
    account = paper_account()
    strategy = strategy_on(account, "swing")
    platform.schedule(TIMEOUTS, 60)

    entry = place_entry(operator, strategy)
    platform.run()
    entry.refresh_from_db()
    assert (entry.status, entry.filled_quantity, entry.average_fill_price) == (
        OrderStatus.FILLED, Decimal("0.2"), Decimal("50005"))  # the ask: 50 000 + 0.01 %
    position = Position.objects.get(pk=entry.position_id)
    assert (position.state, position.quantity, position.opened_at) == ("OPEN", Decimal("0.2"),
                                                                      START)

    platform.run(until=START + timedelta(minutes=179, seconds=59))
    assert Position.objects.get(pk=position.pk).state == PositionState.OPEN
    platform.run(until=START + timedelta(minutes=180))
    assert Position.objects.get(pk=position.pk).state == PositionState.WARNING
    platform.run(until=START + timedelta(minutes=239, seconds=59))
    assert Position.objects.get(pk=position.pk).state == PositionState.WARNING
    platform.run(until=START + timedelta(minutes=240))

    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.close_reason, position.quantity) == ("CLOSED", "timeout", 0)
    action = Action.objects.get(position=position)
    assert (action.kind, action.state, action.attempts, action.requested_by) == (
        "emergency_close", ActionState.DONE, 1, "timeout")
    close = Order.objects.get(action=action)
    assert (close.client_order_id, close.side, close.quantity, close.reduce_only,
            close.purpose, close.status, close.average_fill_price) == (
        f"close-{action.pk}", "sell", Decimal("0.2"), True, "emergency_close",
        OrderStatus.FILLED, Decimal("49995"))  # the bid
    trade = Trade.objects.get(position=position)
    # (49 995 − 50 005) × 0.2 − fees 0.2 × (50 005 + 49 995) × 0.055 % = −2 − 11.0
    assert (trade.exit_reason, trade.pnl, trade.fees, trade.holding_seconds) == (
        "timeout", Decimal("-13.0000000000"), Decimal("11.0000000000"), 240 * 60)
    assert trade.closed_at == START + timedelta(minutes=240)
    at = [START, START + timedelta(minutes=180)] + [START + timedelta(minutes=240)] * 4
    assert events_of(position) == list(zip(
        ["opened", "transition", "transition", "close_requested", "transition", "transition"],
        ["", "OPEN", "WARNING", "", "CRITICAL", "CLOSING"],
        ["OPEN", "WARNING", "CRITICAL", "", "CLOSING", "CLOSED"],
        ["execution", "timeout", "timeout", "timeout", "timeout", "execution"], at, strict=True))
    paper = paper_exchange_for(account)
    assert [(o.client_order_id, o.side, o.amount) for o in paper.orders.values()] == [
        (entry.client_order_id, "buy", Decimal("0.2")), (f"close-{action.pk}", "sell",
                                                          Decimal("0.2"))]
    assert paper.positions[BTC].size == 0
    # check_timeouts ran every minute for 4 hours; the close needed one action message
    assert len(platform.ran(TIMEOUTS)) == 240
    assert [m.short_name for m in platform.sent if m.task != TIMEOUTS] == [
        "drive_order", "process_action"]
