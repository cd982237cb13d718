"""Orders in doubt on the paper exchange: an unknown outcome is never taken for "not there".

After a create whose answer was lost, "not found" counts only after ``inDoubtLookups``
targeted lookups over ``inDoubtGraceSeconds``; until then nothing replaces the order,
the order timeout included. Time is moved, never slept.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.models import ActionState, Order, OrderStatus
from execution.pipeline import order_submit
from execution.services import action_process, order_advance, order_place, run_inline
from execution.tests.conftest import START, SYMBOL, configure
from lifecycle.models import Position, PositionState
from lifecycle.services import position_request_close
from risk.models import RiskAlert
from tradingsite.testing.factories import PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db

# The create is processed but its answer is lost; the lookups fail twice (HTTP 500-like)
# and the listing then lags once: the faults of the duplicate emergency close.
LOST_CREATE_THEN_LAGGING_LOOKUPS = [
    {"on": "place", "kind": "timeout_after_accept"},
    {"on": "find", "kind": "unavailable", "times": 2},
    {"on": "find", "kind": "not_listed"},
]


@pytest.fixture
def one_retry_strategy(paper_account):
    return StrategyFactory(name="one-retry", account=paper_account,
                           live_trading={"orderExecution": {"maxRetries": 1}})


def _close(strategy, sleep, quantity="0.4"):
    position = PositionFactory(strategy=strategy, symbol=SYMBOL, quantity=Decimal(quantity),
                               entry_price=Decimal("49000"))
    action, _ = position_request_close(position=position, reason="timeout", actor="timeout")
    return position, action_process(action.pk, drive=run_inline(sleep=sleep))


def test_a_timed_out_emergency_close_in_doubt_is_never_replaced_under_a_new_id(
        paper_account, one_retry_strategy, sleep):
    paper = configure(paper_account, faults=LOST_CREATE_THEN_LAGGING_LOOKUPS)

    position, action = _close(one_retry_strategy, sleep)

    assert [(o.client_order_id, o.amount, o.status) for o in paper.orders.values()] == [
        (f"close-{action.pk}", Decimal("0.4"), "closed")]
    order = Order.objects.get(position=position)
    assert (order.status, order.exchange_order_id, order.filled_quantity, order.timed_out) == (
        OrderStatus.FILLED, "paper-1", Decimal("0.4"), True)
    assert (order.attempts, order.in_doubt_since, order.doubt_lookups) == (2, None, 0)
    # retry after 1 s (lookup failed), then lookups every 10 s: failed, not listed; at
    # 31 s (past the 30 s order timeout) the lookup finds it filled
    assert sleep.delays == [1.0, 10.0, 10.0, 10.0]
    assert (paper.calls["place"], paper.calls["find"], paper.calls["cancel"]) == (1, 4, 1)
    assert (action.state, action.result["order"]) == (ActionState.DONE, f"close-{action.pk}")
    position.refresh_from_db()
    assert (position.state, position.quantity) == (PositionState.CLOSED, Decimal("0"))


def test_a_limit_entry_in_doubt_at_its_timeout_is_found_and_cancelled_not_left_open(
        paper_account, one_retry_strategy, sleep):
    paper = configure(paper_account, faults=LOST_CREATE_THEN_LAGGING_LOOKUPS)

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=one_retry_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"), order_type="limit", price=Decimal("49900"))

    assert [(o.id, o.status) for o in paper.orders.values()] == [("paper-1", "canceled")]
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.exchange_order_id, stored.filled_quantity) == (
        OrderStatus.CANCELLED, "paper-1", Decimal("0"))
    assert stored.timed_out is True
    assert sleep.delays == [1.0, 10.0, 10.0, 10.0]
    assert not Position.objects.exists()


def test_a_listing_lagging_twice_at_the_order_timeout_leaves_one_close_that_the_database_knows(
        paper_account, one_retry_strategy, sleep):
    paper = configure(paper_account, faults=[
        {"on": "place", "kind": "timeout_after_accept"},
        {"on": "find", "kind": "unavailable", "times": 3},  # 1 s, 11 s, 21 s
        {"on": "find", "kind": "not_listed", "times": 2},  # 31 s (timed out), 41 s
    ])

    position, action = _close(one_retry_strategy, sleep)

    assert len(paper.orders) == 1
    order = Order.objects.get(position=position)
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, "paper-1", Decimal("0.4"))
    assert paper.orders["paper-1"].filled == order.filled_quantity
    assert sleep.delays == [1.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    assert order.finalized_at == START + timedelta(seconds=51)
    assert action.state == ActionState.DONE
    assert Position.objects.get(pk=position.pk).state == PositionState.CLOSED


def test_an_order_not_found_is_declared_absent_only_after_three_lookups_over_30_s(
        paper_account, one_retry_strategy, sleep):
    # every send times out before the exchange acts: it never had the order
    paper = configure(paper_account, faults=[{"on": "place", "kind": "timeout", "times": 2}])

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=one_retry_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"))

    # sends at 0 s and 1 s; lookups at 11, 21 and 31 s: the third is 30 s after the send
    assert sleep.delays == [1.0, 10.0, 10.0, 10.0]
    assert (paper.calls["place"], paper.calls["find"]) == (2, 4)
    assert (order.status, order.error_code) == (OrderStatus.FAILED, "unknown_to_exchange")
    assert order.last_error == ("no answer after 2 attempts: paper: read timed out; not final "
                                "after 30 s; not found by client order id in 3 lookups over "
                                "30 s")
    assert order.finalized_at == START + timedelta(seconds=31)
    alert = RiskAlert.objects.get()
    assert (alert.kind, alert.severity) == ("order_unknown", "WARNING")


def test_a_truncated_200_reply_is_not_an_acknowledgement_the_order_is_found_by_client_id(
        paper_account, paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"on": "place", "kind": "truncated_after_accept"}])

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=paper_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"))

    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, "paper-1", Decimal("0.5"))
    assert (paper.calls["place"], paper.calls["find"], paper.calls["fetch"]) == (1, 1, 0)
    assert sleep.delays == [1.0]
    assert order.attempts == 2  # the second attempt looked it up instead of resending
    assert len(paper.orders) == 1


def test_a_request_processed_after_the_client_gave_up_is_found_by_the_next_lookup(
        paper_account, paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"on": "place", "kind": "delayed_accept",
                                              "seconds": 2}])

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=paper_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"))

    # the resend at 1 s arrives first; the delayed original (due at 2 s) is refused then
    assert (order.status, order.exchange_order_id) == (OrderStatus.FILLED, "paper-1")
    sleep(1)
    assert paper.find_order(order.client_order_id, SYMBOL).id == "paper-1"
    assert len(paper.orders) == 1
    assert paper.calls["place"] == 2


def test_a_resend_in_doubt_reuses_the_client_order_id(paper_account, paper_strategy, clock):
    paper = configure(paper_account, faults=[{"on": "place", "kind": "drop"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))

    step = order_advance(order)
    assert (step.order.status, step.order.in_doubt_since) == (OrderStatus.UNKNOWN, START)
    clock.shift(step.delay)
    order_advance(Order.objects.get(pk=order.pk))

    assert [o.client_order_id for o in paper.orders.values()] == [order.client_order_id]
    assert Order.objects.get(pk=order.pk).in_doubt_since is None


def test_an_order_declared_absent_that_shows_up_later_is_taken_back_once(
        paper_account, paper_strategy, sleep, clock):
    from operations.recovery import recover

    # the first request is processed only after 100 s; every resend times out unprocessed
    paper = configure(paper_account, faults=[
        {"on": "place", "kind": "delayed_accept", "seconds": 100},
        {"on": "place", "kind": "timeout", "times": 3}])
    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=paper_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"))
    assert (order.status, order.error_code, order.finalized_at) == (
        OrderStatus.FAILED, "unknown_to_exchange", START + timedelta(seconds=37))
    assert RiskAlert.objects.get().kind == "order_unknown"
    clock.move_to(START + timedelta(seconds=120))

    report = recover(trigger="test", out=lambda line: None, track=lambda order: None)

    order.refresh_from_db()
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, "paper-1", Decimal("0.5"))
    assert order.error_code == "reappeared"
    assert order.last_error.endswith("reappeared on the exchange after being marked failed: "
                                     "taken back")
    position = Position.objects.get()
    assert (position.quantity, position.entry_price) == (Decimal("0.5"), Decimal("50005"))
    assert order.position_id == position.pk
    assert report.data["orders"][0]["outcome"] == "reappeared"
    alert = RiskAlert.objects.get(kind="order_reappeared")
    assert alert.severity == "CRITICAL"
    recover(trigger="test", out=lambda line: None, track=lambda order: None)  # once only
    assert Position.objects.count() == 1
    assert len(paper.orders) == 1


def test_a_timed_out_emergency_close_is_replaced_only_once_proven_absent(
        paper_account, paper_strategy, sleep):
    # every send fails before the exchange acts: at the 30 s timeout the close is still
    # in doubt; it is replaced at 37 s, when the third lookup 30 s after the last send missed
    paper = configure(paper_account, faults=[{"on": "place", "kind": "unavailable",
                                              "times": 4}])

    position, action = _close(paper_strategy, sleep)

    first, replacement = Order.objects.filter(position=position).order_by("pk")
    assert (first.status, first.error_code, first.timed_out, first.finalized_at) == (
        OrderStatus.FAILED, "unknown_to_exchange", True, START + timedelta(seconds=37))
    assert (replacement.client_order_id, replacement.replaces_id, replacement.created_at) == (
        f"close-{action.pk}-r1", first.pk, START + timedelta(seconds=37))
    assert [o.client_order_id for o in paper.orders.values()] == [f"close-{action.pk}-r1"]
    assert sleep.delays == [1.0, 2.0, 4.0, 10.0, 10.0, 10.0, 0.0]
    assert (action.state, Position.objects.get(pk=position.pk).state) == (
        ActionState.DONE, PositionState.CLOSED)
