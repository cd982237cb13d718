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
from notifications.models import Notification
from tests.integration.conftest import BTC, START, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

TIMEOUTS = "lifecycle.tasks.check_timeouts"
DELIVER = "notifications.tasks.deliver_notifications"


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
    assert [m.short_name for m in platform.sent if m.task not in (TIMEOUTS, DELIVER)] == [
        "drive_order", "process_action"]
    # what a trader was told, each from the transaction of its event, each routed by the pass
    # the commits asked for (it starts 0.2 s after the first commit of a burst)
    platform.run(until=START + timedelta(minutes=240, seconds=1))
    assert list(Notification.objects.filter(position=position).order_by("pk").values_list(
        "kind", "severity", "created_at")) == [
        ("position_warning", "WARNING", START + timedelta(minutes=180)),
        ("position_timeout", "CRITICAL", START + timedelta(minutes=240)),
        ("position_closed", "WARNING", START + timedelta(minutes=240))]
    assert not Notification.objects.filter(routed_at__isnull=True).exists()
    assert len(platform.ran(DELIVER)) == 2  # one at 180 min, one for the burst at 240 min


def test_without_automatic_timeout_a_critical_position_is_held_and_reported(platform, operator):
    account = paper_account()
    strategy = strategy_on(account, "manual-exits",
                           lifecycle={"enableAutomaticTimeout": False,
                                      "warningThresholdMinutes": 30,
                                      "maxHoldingTimeMinutes": 60})
    platform.schedule(TIMEOUTS, 60)
    entry = place_entry(operator, strategy)

    platform.run(until=START + timedelta(hours=2))

    position = Position.objects.get(pk=Order.objects.get(pk=entry.pk).position_id)
    assert (position.state, position.warning_at, position.critical_at) == (
        "CRITICAL", START + timedelta(minutes=30), START + timedelta(minutes=60))
    assert not Action.objects.exists()
    assert Order.objects.count() == 1
    assert paper_exchange_for(account).calls["place"] == 1
    listed = operator.get("/api/lifecycle/timeouts").json()["results"]
    assert [(p["id"], p["state"], p["minutes_past_warning"], p["minutes_past_timeout"],
             p["close_action_id"]) for p in listed] == [(position.pk, "CRITICAL", 90.0, 60.0,
                                                         None)]


def test_a_position_closed_by_its_signal_before_the_warning_is_never_touched_by_the_timeouts(
        platform, operator):
    from lifecycle.services import position_request_close

    account = paper_account()
    strategy = strategy_on(account, "scalp")
    platform.schedule(TIMEOUTS, 300)
    entry = place_entry(operator, strategy, side="sell", quantity="0.1")
    platform.run(until=START + timedelta(minutes=90))
    position = Position.objects.get(pk=Order.objects.get(pk=entry.pk).position_id)
    paper_exchange_for(account).set_price(BTC, Decimal("49000"))

    _, created = position_request_close(position=position, reason="signal", actor="bot",
                                        kind="close")
    platform.run(until=START + timedelta(hours=6))

    assert created
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.warning_at, position.critical_at) == ("CLOSED", None, None)
    trade = position.trade
    # short 0.1 from the bid 49 995 to the ask 49 004.9:
    # 0.1 × 990.1 − fees 0.1 × (49 995 + 49 004.9) × 0.055 % = 99.01 − 5.4449945
    assert (trade.exit_reason, trade.exit_price, trade.pnl) == (
        "signal", Decimal("49004.9000000000"), Decimal("93.5650055000"))
    assert trade.holding_seconds == 90 * 60
    assert list(Action.objects.values_list("kind", "state", "requested_by")) == [
        ("close", "done", "bot")]
    assert [e[:3] for e in events_of(position)] == [
        ("opened", "", "OPEN"), ("close_requested", "", ""), ("transition", "OPEN", "CLOSING"),
        ("transition", "CLOSING", "CLOSED")]


def test_a_timeout_close_the_exchange_rejects_is_queued_again_a_minute_later(platform, operator):
    from tests.integration.conftest import inject_faults

    account = paper_account()
    strategy = strategy_on(account, "swing", lifecycle={"warningThresholdMinutes": 20,
                                                        "maxHoldingTimeMinutes": 30})
    platform.schedule(TIMEOUTS, 60)
    entry = place_entry(operator, strategy)
    platform.run()
    paper = inject_faults(account, {"kind": "reject", "error": "invalid_order",
                                    "message": "reduce-only order rejected: risk limit"})

    platform.run(until=START + timedelta(minutes=30))
    position = Position.objects.get(pk=Order.objects.get(pk=entry.pk).position_id)
    first = Action.objects.get(position=position)
    assert (first.state, first.error, first.idempotency_key) == (
        ActionState.FAILED, "reduce-only order rejected: risk limit", f"timeout:{position.pk}:0")
    assert position.state == PositionState.CRITICAL

    platform.run(until=START + timedelta(minutes=31))

    second = Action.objects.exclude(pk=first.pk).get()
    assert (second.state, second.idempotency_key, second.created_at) == (
        ActionState.DONE, f"timeout:{position.pk}:1", START + timedelta(minutes=31))
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.trade.exit_reason) == ("CLOSED", "timeout")
    assert list(Order.objects.filter(purpose="emergency_close").order_by("pk").values_list(
        "client_order_id", "status", "last_error")) == [
        (f"close-{first.pk}", "rejected", "reduce-only order rejected: risk limit"),
        (f"close-{second.pk}", "filled", "")]
    assert paper.calls["place"] == 3  # entry, the refused close, the close
    assert [o.client_order_id for o in paper.orders.values()] == [
        entry.client_order_id, f"close-{second.pk}"]
    assert [e[:4] for e in events_of(position)][3:] == [
        ("close_requested", "", "", "timeout"), ("transition", "CRITICAL", "CLOSING", "timeout"),
        ("transition", "CLOSING", "CRITICAL", "execution"),
        ("close_requested", "", "", "timeout"), ("transition", "CRITICAL", "CLOSING", "timeout"),
        ("transition", "CLOSING", "CLOSED", "execution")]


def test_the_timeout_pass_leaves_a_position_alone_while_its_manual_close_is_working(
        platform, operator):
    from lifecycle.services import position_request_close
    from tests.integration.conftest import inject_faults

    account = paper_account()
    strategy = strategy_on(account, "swing", lifecycle={"warningThresholdMinutes": 30,
                                                        "maxHoldingTimeMinutes": 40})
    platform.schedule(TIMEOUTS, 60)
    entry = place_entry(operator, strategy)
    platform.run()
    position = Position.objects.get(pk=Order.objects.get(pk=entry.pk).position_id)
    paper = inject_faults(account, {"kind": "stay_open"})  # the close order rests unfilled
    platform.run(until=START + timedelta(minutes=39, seconds=50))

    action, _ = position_request_close(position=position, reason="manual", actor="operator")
    platform.run(until=START + timedelta(minutes=41))

    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.close_reason, position.trade.exit_reason) == (
        "CLOSED", "manual", "manual")
    assert list(Action.objects.values_list("pk", "state", "requested_by")) == [
        (action.pk, "done", "operator")]
    # the resting close timed out after 30 s, was cancelled and replaced at market
    assert list(Order.objects.filter(action=action).order_by("pk").values_list(
        "client_order_id", "status", "timed_out", "filled_at")) == [
        (f"close-{action.pk}", "cancelled", True, None),
        (f"close-{action.pk}-r1", "filled", False,
         START + timedelta(minutes=40, seconds=20))]
    assert (paper.calls["place"], paper.calls["cancel"]) == (3, 1)
    assert position.critical_at is None  # WARNING → CLOSING: the timeout never moved it
    assert [e[1:4] for e in events_of(position)][1:] == [
        ("OPEN", "WARNING", "timeout"), ("", "", "operator"), ("WARNING", "CLOSING", "operator"),
        ("CLOSING", "CLOSED", "execution")]
