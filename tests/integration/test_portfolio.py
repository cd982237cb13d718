"""Several positions at once: two strategies with different limits on two accounts,
two symbols each, long and short; order work routed to each account's queue."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from analytics.selectors import TradeFilters
from analytics.services import ReportRequest, performance_report
from execution.exchanges.paper import paper_exchange_for
from execution.models import Order
from lifecycle.models import Position, Trade
from tests.integration.conftest import BTC, ETH, START, inject_faults, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

FAST_QUEUE = "orders.fast"
LEGS = [("fast", BTC, "buy", "0.2"), ("fast", ETH, "sell", "3"),
        ("slow", BTC, "sell", "0.1"), ("slow", ETH, "buy", "2")]


@pytest.fixture
def book(client, staff_user):
    """Account ``fast`` (own order queue; 30/45 min limits) and ``slow`` (90/120 min)."""
    fast_account = paper_account("paper-fast")
    fast_account.order_queue = FAST_QUEUE
    fast_account.save(update_fields=["order_queue"])
    slow_account = paper_account("paper-slow")
    strategies = {
        "fast": strategy_on(fast_account, "fast", lifecycle={"warningThresholdMinutes": 30,
                                                             "maxHoldingTimeMinutes": 45},
                            orderExecution={"retryDelayMs": 250, "maxRetries": 2}),
        "slow": strategy_on(slow_account, "slow", lifecycle={"warningThresholdMinutes": 90,
                                                             "maxHoldingTimeMinutes": 120}),
    }
    client.force_login(staff_user)
    return client, strategies


def enter_all(client, strategies):
    for name, symbol, side, quantity in LEGS:
        response = client.post("/api/execution/orders/place", {
            "strategy": name, "symbol": symbol, "side": side, "quantity": quantity},
            content_type="application/json")
        assert response.status_code == 202


def states():
    return {(p.strategy.name, p.symbol): p.state
            for p in Position.objects.select_related("strategy")}


def test_each_strategy_times_out_on_its_own_limits_and_closes_on_its_own_account(
        platform, book):
    client, strategies = book
    platform.schedule("lifecycle.tasks.check_timeouts", 60)
    enter_all(client, strategies)

    platform.run(until=START + timedelta(minutes=30))
    assert states() == {("fast", BTC): "WARNING", ("fast", ETH): "WARNING",
                        ("slow", BTC): "OPEN", ("slow", ETH): "OPEN"}
    platform.run(until=START + timedelta(minutes=45))
    assert states() == {("fast", BTC): "CLOSED", ("fast", ETH): "CLOSED",
                        ("slow", BTC): "OPEN", ("slow", ETH): "OPEN"}
    platform.run(until=START + timedelta(minutes=90))
    assert set(states().values()) == {"CLOSED", "WARNING"}
    platform.run(until=START + timedelta(minutes=120))

    trades = {(t.strategy.name, t.symbol): t for t in Trade.objects.select_related("strategy")}
    assert {key: (t.side, t.exit_reason, t.holding_seconds) for key, t in trades.items()} == {
        ("fast", BTC): ("long", "timeout", 45 * 60), ("fast", ETH): ("short", "timeout", 45 * 60),
        ("slow", BTC): ("short", "timeout", 120 * 60), ("slow", ETH): ("long", "timeout", 120 * 60)}
    # entered and left at the touch: the loss is the spread and both fees
    assert {key: t.pnl for key, t in trades.items()} == {
        ("fast", BTC): Decimal("0.2") * (Decimal("49995") - Decimal("50005"))
        - Decimal("0.2") * Decimal("100000") * Decimal("0.00055"),
        ("fast", ETH): Decimal("3") * (Decimal("2499.75") - Decimal("2500.25"))
        - Decimal("3") * Decimal("5000") * Decimal("0.00055"),
        ("slow", BTC): Decimal("0.1") * (Decimal("49995") - Decimal("50005"))
        - Decimal("0.1") * Decimal("100000") * Decimal("0.00055"),
        ("slow", ETH): Decimal("2") * (Decimal("2499.75") - Decimal("2500.25"))
        - Decimal("2") * Decimal("5000") * Decimal("0.00055")}
    for name, account_name in (("fast", "paper-fast"), ("slow", "paper-slow")):
        paper = paper_exchange_for(strategies[name].account)
        assert sorted((o.symbol, o.side, o.amount, o.reduce_only)
                      for o in paper.orders.values()) == sorted(
            [(symbol, side, Decimal(qty), False) for n, symbol, side, qty in LEGS if n == name]
            + [(symbol, "sell" if side == "buy" else "buy", Decimal(qty), True)
               for n, symbol, side, qty in LEGS if n == name]), account_name
    # the fast account's order steps ran on its queue, everything else on the default one
    queues = Counter((m.short_name, m.queue) for m in platform.sent
                     if m.short_name not in ("check_timeouts", "deliver_notifications"))
    assert queues == {("drive_order", FAST_QUEUE): 4, ("drive_order", "celery"): 2,
                      ("process_action", "celery"): 4}
    report = performance_report(ReportRequest(filters=TradeFilters(strategy="fast")))
    assert report["trade_count"] == 2
    assert report["metrics"]["total_pnl"]["value"] == pytest.approx(
        float(trades[("fast", BTC)].pnl + trades[("fast", ETH)].pnl), abs=1e-9)
    assert report["starting_capital"] == 100000.0


def test_a_stalled_account_queue_does_not_hold_up_the_other_accounts_closes(platform, book):
    client, strategies = book
    enter_all(client, strategies)
    platform.queues = {"celery"}  # nobody serves orders.fast: that exchange is stuck
    platform.run()
    assert states() == {("slow", BTC): "OPEN", ("slow", ETH): "OPEN"}
    assert [m.queue for m in platform.pending] == [FAST_QUEUE, FAST_QUEUE]

    platform.queues = None  # a worker for orders.fast comes back
    platform.run()
    assert len(states()) == 4
    fast_entries = Order.objects.filter(account__name="paper-fast")
    assert {o.status for o in fast_entries} == {"filled"}


def test_retries_follow_each_strategys_order_execution_config(platform, book):
    client, strategies = book
    for strategy in strategies.values():
        inject_faults(strategy.account, {"on": "place", "kind": "rate_limit", "times": 4})

    enter_all(client, strategies)
    platform.run()

    backoff = Counter((m.queue, m.countdown) for m in platform.ran("drive_order")
                      if m.countdown)
    # two legs on each account, each retried twice: 0.25 s then 0.5 s (fast), 1 s then 2 s
    assert backoff == {(FAST_QUEUE, 0.25): 2, (FAST_QUEUE, 0.5): 2, ("celery", 1.0): 2,
                       ("celery", 2.0): 2}
    assert [o.retries for o in Order.objects.all()] == [2, 2, 2, 2]
    assert sorted(p.opened_at - START for p in Position.objects.all()) == [
        timedelta(seconds=0.75)] * 2 + [timedelta(seconds=3)] * 2


def test_an_account_without_its_own_queue_is_routed_by_exchange_queues(platform, book,
                                                                       settings):
    client, strategies = book
    settings.EXCHANGE_QUEUES = {"paper-slow": "orders.slow"}

    enter_all(client, strategies)
    platform.run()

    account_of = dict(Order.objects.values_list("pk", "account__name"))
    assert Counter((account_of[m.args[0]], m.queue) for m in platform.ran("drive_order")) == {
        ("paper-fast", FAST_QUEUE): 2, ("paper-slow", "orders.slow"): 2}
    assert len(states()) == 4
