"""Emergency closes on an exchange that fails: backoff, lookups by client order id,
lost messages, and a close that gives up and is queued again.

Whatever fails, the exchange ends with exactly one close order per position.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.models import Action, Order
from lifecycle.models import Position
from lifecycle.services import position_open, position_request_close
from tests.integration.conftest import BTC, START, inject_faults, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def held():
    """0.4 BTC long from 48 000, handed over an hour ago."""
    account = paper_account()
    strategy = strategy_on(account, "breakout")
    position = position_open(strategy=strategy, symbol=BTC, side="long",
                             quantity=Decimal("0.4"), entry_price=Decimal("48000"),
                             opened_at=START - timedelta(hours=1))
    return account, position


def drive_steps(platform):
    return [(m.countdown, m.ran_at - START) for m in platform.ran("drive_order")]


def test_an_emergency_close_the_exchange_refuses_twice_is_placed_once_after_1_and_2_s(
        platform, held):
    account, position = held
    paper = inject_faults(account, {"on": "place", "kind": "unavailable", "times": 2})

    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    platform.run()

    assert drive_steps(platform) == [(1.0, timedelta(seconds=1)), (2.0, timedelta(seconds=3))]
    order = Order.objects.get(action=action)
    assert (order.status, order.attempts, order.retries, order.error_code) == (
        "filled", 3, 2, "503")
    assert order.last_error == ("paper: service unavailable (attempt 2; retry 2 of 3 in 2 s)")
    assert (order.submitted_at, order.acknowledged_at, order.latency_ms) == (
        START, START + timedelta(seconds=3), 3000)
    assert (paper.calls["place"], paper.calls["find"]) == (3, 2)  # looked up before each resend
    assert [(o.client_order_id, o.amount, o.status) for o in paper.orders.values()] == [
        (f"close-{action.pk}", Decimal("0.4"), "closed")]
    action.refresh_from_db()
    assert (action.state, action.attempts) == ("done", 1)
    trade = Position.objects.get(pk=position.pk).trade
    # (49 995 − 48 000) × 0.4 − 0.4 × 49 995 × 0.055 % = 798 − 10.9989
    assert (trade.exit_reason, trade.closed_at, trade.pnl) == (
        "risk", START + timedelta(seconds=3), Decimal("787.0011000000"))


def test_an_answer_lost_after_the_exchange_accepted_is_found_by_client_id_not_resent(
        platform, held):
    account, position = held
    paper = inject_faults(account, {"on": "place", "kind": "timeout_after_accept"},
                          {"on": "find", "kind": "timeout"})

    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    platform.run()

    # attempt 1 placed the order and lost the answer; attempt 2's lookup timed out;
    # attempt 3's lookup found the filled order: nothing was sent twice
    assert drive_steps(platform) == [(1.0, timedelta(seconds=1)), (2.0, timedelta(seconds=3))]
    assert (paper.calls["place"], paper.calls["find"]) == (1, 2)
    assert len(paper.orders_with_client_id(f"close-{action.pk}")) == 1
    order = Order.objects.get(action=action)
    assert (order.status, order.attempts, order.exchange_order_id) == ("filled", 3, "paper-1")
    assert Position.objects.get(pk=position.pk).state == "CLOSED"


def test_a_close_that_gives_up_returns_the_position_and_the_timeout_pass_asks_again(
        platform, held):
    account, position = held
    # a grace shorter than the order timeout: proven absent before it times out
    position.strategy.live_trading = {"lifecycle": {"warningThresholdMinutes": 30,
                                                    "maxHoldingTimeMinutes": 60},
                                      "orderExecution": {"inDoubtGraceSeconds": 9}}
    position.strategy.save(update_fields=["live_trading"])
    paper = inject_faults(account, {"on": "place", "kind": "unavailable", "times": 4})
    platform.schedule("lifecycle.tasks.check_timeouts", 60)

    platform.run(until=START + timedelta(minutes=1, seconds=16))
    first = Action.objects.get()
    failed = Order.objects.get(action=first)
    # sends at 60, 61, 63 and 67 s, each unanswered (in doubt); then three lookups by
    # client order id over 9 s: none finds it, so the close failed for good
    assert drive_steps(platform) == [(1.0, timedelta(seconds=61)), (2.0, timedelta(seconds=63)),
                                     (4.0, timedelta(seconds=67)), (3.0, timedelta(seconds=70)),
                                     (3.0, timedelta(seconds=73)), (3.0, timedelta(seconds=76))]
    assert (failed.status, failed.attempts, failed.error_code, failed.last_error) == (
        "failed", 4, "unknown_to_exchange", "no answer after 4 attempts: paper: service "
        "unavailable; not found by client order id in 3 lookups over 9 s")
    assert paper.calls["find"] == 6  # before each resend, then the three in doubt
    assert (first.state, first.error) == ("failed", failed.last_error)
    assert Position.objects.get(pk=position.pk).state == "CRITICAL"

    # queued again one minute after the failed close ended: the pass at 3 min (2 min too early)
    platform.run(until=START + timedelta(minutes=3))

    second = Action.objects.exclude(pk=first.pk).get()
    assert (second.created_at, second.state) == (START + timedelta(minutes=3), "done")
    assert list(paper.orders) == ["paper-1"]
    assert paper.orders["paper-1"].client_order_id == f"close-{second.pk}"
    assert paper.calls["place"] == 5
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.trade.exit_reason, position.trade.closed_at) == (
        "CLOSED", "timeout", START + timedelta(minutes=3))


def test_a_close_whose_messages_were_lost_is_finished_by_the_order_timeout_sweep(
        platform, held):
    account, position = held
    paper = inject_faults(account, {"on": "place", "kind": "drop_after_accept"})
    platform.schedule("execution.tasks.sweep_order_timeouts", 5)

    action, _ = position_request_close(position=position, reason="manual", actor="operator")
    platform.run(until=START)
    assert Order.objects.get(action=action).status == "unknown"
    assert [m.countdown for m in platform.lose("drive_order")] == [1.0]  # the worker crashed

    platform.run(until=START + timedelta(seconds=30))

    order = Order.objects.get(action=action)
    assert (order.status, order.timed_out, order.filled_quantity) == (
        "filled", True, Decimal("0.4"))  # the exchange had filled it: no replacement
    # the sweep found it by client id, its cancel came too late, the read-back said filled
    assert (paper.calls["place"], paper.calls["find"], paper.calls["cancel"],
            paper.calls["fetch"]) == (1, 1, 1, 1)
    assert len(platform.ran("sweep_order_timeouts")) == 6
    action.refresh_from_db()
    assert (action.state, action.result["order"], action.finished_at) == (
        "done", f"close-{action.pk}", START + timedelta(seconds=30))
    assert Position.objects.get(pk=position.pk).trade.closed_at == START + timedelta(seconds=30)
