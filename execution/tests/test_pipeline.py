"""The order pipeline against the paper exchange with fault injection (time moved, not slept)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from execution import tasks
from execution.models import Order, OrderPurpose, OrderStatus
from execution.pipeline import order_submit
from execution.services import order_place, run_inline
from execution.tests.conftest import START, SYMBOL, configure
from lifecycle.models import Position, PositionState

pytestmark = pytest.mark.django_db


def _buy(account, strategy, drive, quantity="0.5", **kwargs):
    return order_place(drive=drive, account=account, strategy=strategy, symbol=SYMBOL,
                       side="buy", quantity=Decimal(quantity), **kwargs)


def test_a_market_entry_fills_at_the_touch_and_opens_the_position(paper_account, paper_strategy,
                                                                     paper, sleep):
    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == Decimal("0.5")
    assert order.average_fill_price == Decimal("50005")  # ask: mid 50 000 + half the 0.02 % spread
    assert order.fee == Decimal("13.751375")  # 0.5 × 50 005 × 0.055 %
    assert order.expected_price == Decimal("50000")
    assert order.estimated_slippage_percent == Decimal("0.01")
    assert order.slippage_percent == Decimal("0.01")
    assert (order.attempts, order.retries, order.latency_ms) == (1, 0, 0)
    assert sleep.delays == []
    position = Position.objects.get(pk=order.position_id)
    assert (position.side, position.quantity, position.entry_price, position.entry_fee) == (
        "long", Decimal("0.5"), Decimal("50005"), Decimal("13.751375"))
    assert position.state == PositionState.OPEN
    assert paper.positions[SYMBOL].size == Decimal("0.5")


def test_the_client_order_id_is_recorded_before_any_network_call(paper_account, paper):
    order = order_submit(account=paper_account, symbol=SYMBOL, side="buy",
                         quantity=Decimal("0.5"))
    assert Order.objects.get(pk=order.pk).client_order_id == order.client_order_id
    assert order.status == OrderStatus.CREATED
    assert len(order.client_order_id) <= 36
    assert sum(paper.calls.values()) == 0


def test_transient_failures_are_retried_after_exactly_1_2_and_4_seconds(
        paper_account, paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"kind": "timeout", "times": 3}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert sleep.delays == [1.0, 2.0, 4.0]
    assert order.status == OrderStatus.FILLED
    assert (order.attempts, order.retries) == (4, 3)
    assert order.submitted_at == START
    assert order.acknowledged_at == START + timedelta(seconds=7)
    assert order.latency_ms == 7000
    assert paper.calls["place"] == 4
    assert len(paper.orders_with_client_id(order.client_order_id)) == 1


def test_the_backoff_follows_the_strategys_retry_config(paper_account, sleep):
    from tradingsite.testing.factories import StrategyFactory

    strategy = StrategyFactory(account=paper_account, live_trading={
        "orderExecution": {"retryDelayMs": 250, "maxRetries": 2}})
    configure(paper_account, faults=[{"kind": "rate_limit", "times": 5}])

    order = _buy(paper_account, strategy, run_inline(sleep=sleep))

    # then in doubt (each 429 came after sending): three lookups over 30 s, none finds it
    assert sleep.delays == [0.25, 0.5, 10.0, 10.0, 10.0]
    assert (order.status, order.error_code) == (OrderStatus.FAILED, "unknown_to_exchange")
    assert order.last_error == ("no answer after 3 attempts: paper: too many visits; not final "
                                "after 30 s; not found by client order id in 3 lookups over "
                                "30 s")


def test_after_the_last_retry_the_order_fails_when_the_exchange_does_not_have_it(
        paper_account, paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"kind": "timeout", "times": 4}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    # a timeout may come after the exchange acted: in doubt after the last send (7 s),
    # the order fails once three lookups by client order id over 30 s did not find it
    assert sleep.delays == [1.0, 2.0, 4.0, 10.0, 10.0, 10.0]
    assert order.status == OrderStatus.FAILED
    assert (order.attempts, order.retries) == (4, 3)
    assert order.last_error == ("no answer after 4 attempts: paper: read timed out; not final "
                                "after 30 s; not found by client order id in 3 lookups over "
                                "30 s")
    assert order.error_code == "unknown_to_exchange"
    assert paper.orders == {}
    assert order.position_id is None


def test_a_rejection_fails_at_once_with_the_exchange_message(paper_account, paper_strategy,
                                                             sleep):
    paper = configure(paper_account, faults=[{"kind": "reject", "error": "insufficient_funds"}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert order.status == OrderStatus.REJECTED
    assert order.last_error == "ab not enough for new order"
    assert order.error_code == "110007"
    assert (order.attempts, order.retries) == (1, 0)
    assert sleep.delays == []
    assert paper.calls["place"] == 1


def test_a_real_margin_shortfall_is_rejected_with_the_amounts(paper_account, paper_strategy,
                                                              sleep):
    # 100 000 USDT at 10× leverage carries at most ~20 BTC at 50 000
    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep), quantity="25")

    assert order.status == OrderStatus.REJECTED
    assert order.error_code == "110007"
    assert order.last_error.startswith("ab not enough for new order: needs 125687.5")


def test_an_auth_failure_is_not_retried(paper_account, paper_strategy, sleep):
    configure(paper_account, faults=[{"kind": "auth"}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert order.status == OrderStatus.FAILED
    assert (order.last_error, order.error_code) == ("paper: invalid api key", "10003")
    assert sleep.delays == []


@pytest.mark.parametrize("fault", ["timeout_after_accept", "drop_after_accept",
                                   "rate_limit_after_accept"])
def test_accepted_but_response_lost_places_exactly_one_order(paper_account, paper_strategy,
                                                             sleep, fault):
    paper = configure(paper_account, faults=[{"kind": fault}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert len(paper.orders_with_client_id(order.client_order_id)) == 1
    assert len(paper.orders) == 1
    assert paper.calls["place"] == 1  # the retry looked the order up instead of resending
    assert paper.calls["find"] == 1
    assert sleep.delays == [1.0]
    assert order.status == OrderStatus.FILLED
    assert (order.attempts, order.retries) == (2, 1)
    assert order.exchange_order_id == "paper-1"
    assert Position.objects.filter(strategy=paper_strategy).count() == 1


def test_a_lost_response_and_a_failed_lookup_still_place_one_order(paper_account,
                                                                   paper_strategy, sleep):
    paper = configure(paper_account, faults=[{"kind": "timeout_after_accept"},
                                             {"on": "find", "kind": "drop"}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert sleep.delays == [1.0, 2.0]
    assert (paper.calls["place"], paper.calls["find"]) == (1, 2)
    assert len(paper.orders) == 1
    assert order.status == OrderStatus.FILLED


def test_a_lagging_lookup_then_a_duplicate_refusal_means_the_order_exists(
        paper_account, paper_strategy, sleep):
    # The lookup does not list the order yet; the resend with the same client id is
    # refused as a duplicate (Bybit 110072) and the second lookup finds it.
    paper = configure(paper_account, faults=[{"kind": "timeout_after_accept"},
                                             {"kind": "not_listed"}])

    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep))

    assert (paper.calls["place"], paper.calls["find"]) == (2, 2)
    assert len(paper.orders) == 1
    assert order.status == OrderStatus.FILLED
    assert order.exchange_order_id == "paper-1"


def test_the_celery_path_schedules_retries_with_countdowns_1_2_4(
        paper_account, paper_strategy, clock, monkeypatch):
    configure(paper_account, faults=[{"kind": "timeout", "times": 3}])
    scheduled = []
    monkeypatch.setattr(tasks.drive_order, "apply_async",
                        lambda args, countdown, queue: scheduled.append((args, countdown, queue)))
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))

    tasks.drive_order(order.pk)
    order.refresh_from_db()
    assert (order.status, order.next_attempt_at) == (OrderStatus.UNKNOWN,
                                                    START + timedelta(seconds=1))
    assert order.last_error == "paper: read timed out (attempt 1; retry 1 of 3 in 1 s)"
    for countdown in (1, 2, 4):
        clock.shift(countdown)
        tasks.drive_order(order.pk)

    assert [c for _, c, _ in scheduled] == [1.0, 2.0, 4.0]
    assert {args for args, _, _ in scheduled} == {(order.pk,)}
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED


def test_an_early_redelivery_waits_for_the_scheduled_retry(paper_account, paper_strategy, clock,
                                                          monkeypatch):
    paper = configure(paper_account, faults=[{"kind": "timeout"}])
    scheduled = []
    monkeypatch.setattr(tasks.drive_order, "apply_async",
                        lambda args, countdown, queue: scheduled.append(countdown))
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    tasks.drive_order(order.pk)
    clock.shift(0.25)
    tasks.drive_order(order.pk)  # a duplicate delivery before next_attempt_at

    assert scheduled == [1.0, 0.75]
    assert paper.calls["place"] == 1


def test_the_account_queue_routes_order_work(paper_account, paper_strategy, clock, monkeypatch,
                                             settings):
    configure(paper_account, faults=[{"kind": "timeout"}])
    settings.EXCHANGE_QUEUES = {paper_account.name: "orders.paper"}
    queues = []
    monkeypatch.setattr(tasks.drive_order, "apply_async",
                        lambda args, countdown, queue: queues.append(queue))
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    tasks.drive_order(order.pk)
    paper_account.order_queue = "orders.own"
    paper_account.save()
    clock.shift(1)
    order.status = OrderStatus.UNKNOWN
    tasks.drive_in_background(Order.objects.select_related("account").get(pk=order.pk))

    assert queues == ["orders.paper"]  # the second attempt filled: nothing more to schedule
    assert tasks.queue_for(paper_account) == "orders.own"


def test_quantities_are_rounded_down_to_the_market_step(paper_account, paper_strategy, sleep):
    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep), quantity="0.12345")
    assert order.quantity == Decimal("0.123")
    assert order.filled_quantity == Decimal("0.123")


def test_an_order_below_the_minimum_size_is_refused_before_sending(paper_account,
                                                                  paper_strategy, paper, sleep):
    order = _buy(paper_account, paper_strategy, run_inline(sleep=sleep), quantity="0.0004")
    assert order.status == OrderStatus.REJECTED
    assert order.error_code == "min_order_size"
    assert order.last_error == ("quantity 0.0004 (0 on the market's step) is below the market's "
                                "minimum order size 0.001")
    assert paper.calls["place"] == 0


def test_a_limit_order_rests_until_the_price_crosses_it(paper_account, paper_strategy, paper,
                                                        sleep):
    from execution.services import order_advance

    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"), order_type="limit",
                         price=Decimal("49900"))
    step = order_advance(order)
    assert (step.order.status, step.delay) == (OrderStatus.OPEN, 1.0)
    sleep(1)
    paper.set_price(SYMBOL, Decimal("49880"))  # ask 49 885 ≤ 49 900
    step = order_advance(Order.objects.get(pk=order.pk))

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert order.average_fill_price == Decimal("49900")  # a resting order fills at its price
    assert order.fee == Decimal("4.99")  # maker 0.02 % of 24 950
    assert order.slippage_percent == Decimal("0")
    assert order.purpose == OrderPurpose.ENTRY


def test_when_even_the_last_lookup_fails_the_order_stays_in_doubt_and_is_looked_up_again(
        paper_account, paper_strategy, clock):
    from execution.services import order_advance

    paper = configure(paper_account, faults=[{"kind": "timeout_after_accept"},
                                             {"kind": "timeout", "on": "find", "times": 4}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    delays = []
    step = order_advance(order)
    while step.delay and step.why == "retry":
        delays.append(step.delay)
        clock.shift(step.delay)
        step = order_advance(Order.objects.get(pk=order.pk))

    assert delays == [1.0, 2.0, 4.0]
    assert (step.why, step.delay) == ("in doubt", 10.0)
    assert (step.order.status, step.order.in_doubt_since) == (OrderStatus.UNKNOWN,
                                                             START + timedelta(seconds=7))
    clock.shift(5)
    early = order_advance(Order.objects.get(pk=order.pk))  # a stray redelivery
    assert (early.why, early.delay) == ("retry scheduled", 5.0)
    clock.shift(5)
    failed = order_advance(Order.objects.get(pk=order.pk))  # the lookup times out again
    assert (failed.why, failed.delay) == ("in doubt: lookup failed", 10.0)
    clock.shift(10)
    final = order_advance(Order.objects.get(pk=order.pk))
    assert final.order.status == OrderStatus.FILLED  # found 27 s in: it had filled
    assert (final.order.timed_out, final.order.in_doubt_since) == (False, None)
    assert (paper.calls["place"], paper.calls["find"]) == (1, 5)
    assert len(paper.orders) == 1


def test_a_claimed_order_whose_worker_died_before_sending_is_sent_once_later(
        paper_account, paper_strategy, paper, clock):
    from execution.pipeline.placement import claim_attempt
    from execution.pipeline.writes import in_flight_window
    from execution.services import order_advance

    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    assert claim_attempt(order, timezone.now()) is None  # a worker claimed the first attempt
    orphan = Order.objects.get()  # the claim died with its worker: only the row is left

    waiting = order_advance(orphan)
    assert (waiting.done, waiting.why) == (False, "attempt in flight elsewhere")
    assert sum(paper.calls.values()) == 0

    clock.shift(in_flight_window().total_seconds())
    step = order_advance(Order.objects.get())

    assert step.order.status == OrderStatus.FILLED
    assert (paper.calls["find"], paper.calls["place"]) == (1, 1)  # looked up, then sent once
    assert step.order.attempts == 2
    assert len(paper.orders) == 1


def test_a_halt_refuses_the_entry_in_the_same_statement_that_records_it(paper_account,
                                                                         paper_strategy, paper):
    from tradingsite.errors import TradingHalted
    from tradingsite.services import trading_halt

    trading_halt(reason="risk review", actor="ops")

    with pytest.raises(TradingHalted, match="trading is halted: risk review"):
        order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL, side="buy",
                     quantity=Decimal("0.5"))
    assert Order.objects.count() == 0
    assert sum(paper.calls.values()) == 0


def test_an_inline_order_on_an_unknown_exchange_fails_at_once_as_never_sent(sleep):
    from tradingsite.testing.factories import ExchangeAccountFactory

    account = ExchangeAccountFactory(name="typo", exchange_id="bybitt")

    order = order_place(drive=run_inline(sleep=sleep), account=account, symbol=SYMBOL,
                        side="buy", quantity=Decimal("0.5"))

    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.error_code, stored.attempts, stored.submitted_at) == (
        OrderStatus.FAILED, "config", 0, None)
    assert stored.last_error == "unknown ccxt exchange id 'bybitt'"
    assert sleep.delays == []
