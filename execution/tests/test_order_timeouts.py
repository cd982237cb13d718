"""Order timeout: cancel, verify with the exchange, keep partial fills, replace emergency closes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import Action, ActionKind, ActionState, Order, OrderPurpose, OrderStatus
from execution.pipeline import order_submit
from execution.selectors import orders_overdue
from execution.services import (
    action_process,
    order_advance,
    order_cancel,
    order_place,
    orders_expire_overdue,
    run_inline,
)
from execution.tests.conftest import SYMBOL, configure
from lifecycle.models import Position, PositionState
from lifecycle.services import position_request_close
from tradingsite.errors import InvalidStateTransition
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db


def _buy(account, strategy, sleep, quantity="0.5"):
    return order_place(drive=run_inline(sleep=sleep), account=account, strategy=strategy,
                       symbol=SYMBOL, side="buy", quantity=Decimal(quantity))


def test_an_order_still_open_after_30_s_is_cancelled_and_verified(paper_account,
                                                                  paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"kind": "stay_open"}])

    order = _buy(paper_account, paper_strategy, sleep)

    assert sleep.delays == [1.0] * 30  # polled every statusPollIntervalMs until the timeout
    assert order.status == OrderStatus.CANCELLED
    assert order.timed_out is True
    assert order.filled_quantity == 0
    assert order.last_error == "not final after 30 s: cancelled"
    assert paper.orders["paper-1"].status == "canceled"
    assert (paper.calls["cancel"], paper.calls["place"]) == (1, 1)
    assert order.position_id is None


def test_a_fill_during_the_cancel_is_applied(paper_account, paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"kind": "stay_open"}, {"kind": "fill_on_cancel"}])

    order = _buy(paper_account, paper_strategy, sleep)

    assert order.status == OrderStatus.FILLED  # the exchange said "too late": it filled
    assert order.timed_out is True
    assert order.filled_quantity == Decimal("0.5")
    assert paper.orders["paper-1"].status == "closed"
    position = Position.objects.get(pk=order.position_id)
    assert position.quantity == Decimal("0.5")


def test_a_partial_fill_is_kept_when_the_rest_is_cancelled(paper_account, paper_strategy, sleep):
    configure(paper_account, faults=[{"kind": "partial_fill", "ratio": "0.4"}])

    order = _buy(paper_account, paper_strategy, sleep)

    assert order.status == OrderStatus.CANCELLED
    assert order.filled_quantity == Decimal("0.2")
    assert order.average_fill_price == Decimal("50005")
    position = Position.objects.get(pk=order.position_id)
    assert (position.quantity, position.entry_price) == (Decimal("0.2"), Decimal("50005"))


def test_a_partial_fill_during_the_cancel_is_kept_too(paper_account, paper_strategy, sleep):
    configure(paper_account, faults=[{"kind": "partial_fill", "ratio": "0.4"},
                                     {"kind": "fill_on_cancel", "ratio": "0.5"}])

    order = _buy(paper_account, paper_strategy, sleep)

    assert order.status == OrderStatus.CANCELLED
    assert order.filled_quantity == Decimal("0.35")  # 0.2 + half of the 0.3 left


def test_the_timeout_sweep_expires_orders_whose_worker_went_away(paper_account, paper_strategy,
                                                                clock):
    paper = configure(paper_account, faults=[{"kind": "stay_open"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    order_advance(order)  # placed; then its polling chain is lost
    clock.shift(29)
    assert orders_overdue() == []
    clock.shift(1)
    assert orders_overdue() == [order]

    scheduled = []
    assert orders_expire_overdue(schedule=scheduled.append) == 1

    order.refresh_from_db()
    assert (order.status, order.timed_out) == (OrderStatus.CANCELLED, True)
    assert paper.calls["cancel"] == 1
    assert scheduled == []
    assert orders_overdue() == []


def test_an_order_that_never_reached_the_exchange_expires(paper_account, paper_strategy, clock):
    paper = configure(paper_account)
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))  # its task was lost
    clock.shift(31)

    orders_expire_overdue(schedule=lambda step: None)

    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED
    assert order.last_error == "not final after 30 s: cancelled; the exchange never had it"
    assert (paper.calls["find"], paper.calls["place"]) == (1, 0)


def test_the_operator_cancels_an_open_order(paper_account, paper_strategy, clock):
    paper = configure(paper_account, faults=[{"kind": "stay_open"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    order_advance(order)

    order_cancel(order, actor="operator")

    assert order.status == OrderStatus.CANCELLED
    assert order.timed_out is False
    assert order.last_error == "cancel requested by operator"
    assert paper.orders["paper-1"].status == "canceled"
    with pytest.raises(InvalidStateTransition, match="already cancelled"):
        order_cancel(order, actor="operator")


def test_a_cancel_the_exchange_has_not_confirmed_stays_cancelling(paper_account, paper_strategy,
                                                                 clock):
    configure(paper_account, faults=[{"kind": "stay_open"}, {"on": "fetch", "kind": "timeout"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    order_advance(order)

    order_cancel(order, actor="operator")
    assert order.status == OrderStatus.CANCELLING  # the read-back timed out

    order_advance(Order.objects.get(pk=order.pk))
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_a_timed_out_emergency_close_is_replaced_by_a_market_order_for_the_rest(
        paper_account, paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"kind": "partial_fill", "ratio": "0.4"}])
    position = PositionFactory(strategy=paper_strategy, symbol=SYMBOL, quantity=Decimal("0.5"),
                               entry_price=Decimal("49000"))
    action, _ = position_request_close(position=position, reason="timeout", actor="timeout")

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    first, replacement = Order.objects.filter(action=action).order_by("created_at", "pk")
    assert (first.client_order_id, first.status, first.filled_quantity, first.timed_out) == (
        f"close-{action.pk}", OrderStatus.CANCELLED, Decimal("0.2"), True)
    assert (replacement.client_order_id, replacement.replaces_id) == (
        f"close-{action.pk}-r1", first.pk)
    assert (replacement.quantity, replacement.status) == (Decimal("0.3"), OrderStatus.FILLED)
    assert replacement.purpose == OrderPurpose.EMERGENCY_CLOSE and replacement.reduce_only
    position.refresh_from_db()
    assert position.state == PositionState.CLOSED
    assert position.trade.quantity == Decimal("0.5")
    assert position.trade.exit_price == Decimal("49995")  # bid: 50 000 − 5
    assert action.state == ActionState.DONE
    assert action.result["order"] == f"close-{action.pk}-r1"
    assert action.result["trade"] == position.trade.pk
    assert paper.calls["place"] == 2


def test_a_timed_out_normal_close_fails_and_returns_the_position(paper_account, paper_strategy,
                                                                 sleep):
    configure(paper_account, faults=[{"kind": "partial_fill", "ratio": "0.4"}])
    position = PositionFactory(strategy=paper_strategy, symbol=SYMBOL, quantity=Decimal("0.5"),
                               entry_price=Decimal("49000"))
    action, _ = position_request_close(position=position, reason="signal", actor="bot",
                                       kind=ActionKind.CLOSE)

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    assert Order.objects.filter(action=action).count() == 1
    assert action.state == ActionState.FAILED
    assert action.error == "not final after 30 s: cancelled (0.2 of 0.5 filled)"
    position.refresh_from_db()
    assert position.state == PositionState.OPEN
    assert position.quantity == Decimal("0.3")
    assert Action.objects.filter(position=position, state__in=ActionState.open()).count() == 0


def test_an_order_the_exchange_forgot_ends_expired_once_proven_absent(paper_account,
                                                                     paper_strategy, clock):
    paper = configure(paper_account, faults=[{"kind": "stay_open"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    order_advance(order)
    del paper.orders["paper-1"]  # e.g. purged from the exchange's recent orders
    paper._by_client_id.clear()
    clock.shift(30)

    step = order_advance(Order.objects.get(pk=order.pk))
    assert (step.order.status, step.order.doubt_lookups, step.delay) == (
        OrderStatus.CANCELLING, 1, 10.0)  # one miss is no proof: in doubt from here
    delays = []
    while not step.done:
        delays.append(step.delay)
        clock.shift(step.delay)
        step = order_advance(Order.objects.get(pk=order.pk))

    assert delays == [10.0, 10.0, 10.0]
    order.refresh_from_db()
    assert (order.status, order.error_code) == (OrderStatus.EXPIRED, "unknown_to_exchange")
    assert order.last_error == ("not final after 30 s: cancelled; not found by client order id "
                                "in 4 lookups over 30 s")
