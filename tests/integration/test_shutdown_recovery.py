"""Stopping and starting the platform in the middle of a trading session.

A SIGTERM runs the shutdown sequence (halt entries, cancel entry orders, optionally
close positions, snapshot); the next start reconciles with the exchange, resumes the
timeouts for the time spent down and lifts the shutdown's halt. The paper exchange
plays the exchange that kept running while the platform was down.

The shutdown steps run on their own thread and connection: these scenarios commit
(``transaction=True``), except the crash, whose recovery runs in this thread.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from execution.pipeline import Next, order_submit
from execution.tasks import schedule_next
from lifecycle.models import Position, Trade
from lifecycle.services import position_open, position_request_close
from operations.recovery import recover
from operations.shutdown import shutdown_run
from risk.models import RiskAlert
from tests.integration.conftest import (
    BTC,
    ETH,
    START,
    inject_faults,
    paper_account,
    strategy_on,
)
from tradingsite.models import PlatformState, ReconciliationReport

pytestmark = pytest.mark.integration
committed = pytest.mark.django_db(transaction=True)

LIMITS = {"lifecycle": {"warningThresholdMinutes": 30, "maxHoldingTimeMinutes": 60}}


@pytest.fixture(autouse=True)
def _state_dir(settings, tmp_path):
    settings.STATE_DIR = tmp_path


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


def place(operator, strategy, **fields):
    return operator.post("/api/execution/orders/place", {
        "strategy": strategy.name, "symbol": BTC, "side": "buy", "quantity": "0.2", **fields},
        content_type="application/json")


def halted() -> bool:
    return PlatformState.objects.get().trading_halted


@committed
def test_a_session_stopped_by_sigterm_resumes_its_timeouts_and_entries_on_start(
        platform, operator):
    account = paper_account()
    strategy = strategy_on(account, "session", **LIMITS)
    platform.schedule("lifecycle.tasks.check_timeouts", 60)
    assert place(operator, strategy).status_code == 202
    assert place(operator, strategy, symbol=ETH, side="sell", quantity="3").status_code == 202
    resting = place(operator, strategy, order_type="limit", price="49000").json()["id"]
    platform.run(until=START + timedelta(seconds=20))  # the limit order rests (timeout 30 s)
    lines: list[str] = []

    outcome = shutdown_run(timeout=5, reason="SIGTERM", out=lines.append)

    held = list(Position.objects.order_by("pk"))
    assert (outcome.clean, outcome.exit_code) == (True, 0)
    assert lines[:3] == [
        "    halt entries: new entries refused",
        f"    cancel open orders: {Order.objects.get(pk=resting).client_order_id}: cancelled",
        "    close open positions: positions kept open (closePositionsOnShutdown=false): 2"]
    snapshot = outcome.snapshot.data
    assert [(p["id"], p["symbol"], p["side"], p["state"]) for p in snapshot["positions"]] == [
        (held[0].pk, BTC, "long", "OPEN"), (held[1].pk, ETH, "short", "OPEN")]
    assert (snapshot["orders"], snapshot["trading"]["halted"]) == ([], True)
    assert place(operator, strategy).status_code == 409
    paper = paper_exchange_for(account)
    assert [o.status for o in paper.orders.values()] == ["closed", "closed", "canceled"]

    # down for two hours: both positions passed their 60-minute limit meanwhile
    platform.traveller.move_to(START + timedelta(minutes=120))
    report = recover(trigger="runplatform start", on_start=True, exclusive=True,
                     out=lines.append)
    platform.run()

    assert report.summary == (
        "open orders checked: 0; position differences: 0; timeouts resumed: 2 warned, "
        "2 timed out, 2 emergency closes queued; shutdown halt lifted")
    assert report.differences == 0
    assert not halted()
    trades = Trade.objects.order_by("symbol")
    assert [(t.symbol, t.exit_reason, t.holding_seconds) for t in trades] == [
        (BTC, "timeout", 120 * 60), (ETH, "timeout", 120 * 60)]
    assert Order.objects.filter(purpose="emergency_close", status="filled").count() == 2
    assert [o.reduce_only for o in paper.orders.values()] == [False, False, False, True, True]
    assert place(operator, strategy).status_code == 202


@committed
def test_a_shutdown_that_closes_positions_leaves_nothing_for_the_start_to_do(platform):
    account = paper_account()
    strategy = strategy_on(account, "flat-overnight",
                           shutdown={"closePositionsOnShutdown": True})
    positions = [position_open(strategy=strategy, symbol=symbol, side="long",
                               quantity=Decimal(quantity), entry_price=Decimal(price))
                 for symbol, quantity, price in ((BTC, "0.1", "49000"), (ETH, "2", "2400"))]
    platform.run(until=START + timedelta(minutes=5))

    outcome = shutdown_run(timeout=5, reason="SIGTERM")
    platform.run()  # the close messages queued during the shutdown reach a worker later

    assert outcome.clean
    assert (outcome.snapshot.data["positions"], outcome.snapshot.data["orders"]) == ([], [])
    assert list(Action.objects.order_by("pk").values_list("kind", "state", "attempts")) == [
        ("close_on_shutdown", "done", 1)] * 2
    trades = {t.position_id: t for t in Trade.objects.all()}
    assert {pk: (t.exit_reason, t.holding_seconds) for pk, t in trades.items()} == {
        p.pk: ("shutdown", 300) for p in positions}
    # 0.1 × (49 995 − 49 000) − 0.1 × 49 995 × 0.055 %; 2 × (2 499.75 − 2 400) − 2 × 2 499.75 × 0.055 %
    assert [trades[p.pk].pnl for p in positions] == [Decimal("96.7502750000"),
                                                     Decimal("196.7502750000")]
    assert len(paper_exchange_for(account).orders) == 2

    platform.traveller.move_to(START + timedelta(minutes=15))
    report = recover(trigger="runplatform start", on_start=True, exclusive=True)
    assert report.summary == ("open orders checked: 0; position differences: 0; timeouts "
                              "resumed: 0 warned, 0 timed out, 0 emergency closes queued; "
                              "shutdown halt lifted")


@pytest.mark.django_db
def test_after_a_crash_the_start_applies_what_the_exchange_did_while_the_platform_was_down(
        platform):
    account = paper_account()
    strategy = strategy_on(account, "crashed")
    held = position_open(strategy=strategy, symbol=BTC, side="long", quantity=Decimal("0.3"),
                         entry_price=Decimal("49000"))
    inject_faults(account, {"on": "place", "kind": "drop_after_accept", "times": 2})
    close, _ = position_request_close(position=held, reason="risk", actor="risk")
    entry = order_submit(account=account, strategy=strategy, symbol=ETH, side="buy",
                         quantity=Decimal("4"))
    schedule_next(Next(entry, 0.0, "bot entry"))
    never_sent = order_submit(account=account, strategy=strategy, symbol=ETH, side="sell",
                              quantity=Decimal("1"))
    platform.run(until=START)  # both orders reach the exchange, both answers are lost
    assert [Order.objects.get(pk=o.pk).status for o in (entry, never_sent)] == [
        "unknown", "created"]
    assert len(platform.lose("drive_order")) == 2  # kill -9: the retries die with the worker

    platform.traveller.move_to(START + timedelta(minutes=7))
    report = recover(trigger="runplatform start", on_start=True, exclusive=True)
    platform.run()

    outcomes = {c["client_order_id"]: (c["before"], c["after"], c["outcome"])
                for c in report.data["orders"]}
    assert outcomes == {
        f"close-{close.pk}": ("unknown", "filled", "filled"),
        entry.client_order_id: ("unknown", "filled", "filled"),
        never_sent.client_order_id: ("created", "failed", "unknown")}
    # the fills are dated when the exchange filled them, not at the restart
    position = Position.objects.get(pk=held.pk)
    assert (position.state, position.trade.exit_reason, position.trade.closed_at) == (
        "CLOSED", "risk", START)
    close.refresh_from_db()
    assert (close.state, close.attempts) == ("done", 1)
    opened = Position.objects.get(symbol=ETH)
    assert (opened.side, opened.quantity, opened.entry_price, opened.opened_at) == (
        "long", Decimal("4"), Decimal("2500.25"), START)
    paper = paper_exchange_for(account)
    assert sorted(o.client_order_id for o in paper.orders.values()) == sorted(
        [f"close-{close.pk}", entry.client_order_id])
    assert paper.calls["place"] == 2
    alert = RiskAlert.objects.get(kind="order_unknown")
    assert (alert.severity, alert.position_id) == ("WARNING", None)
    assert ReconciliationReport.objects.count() == 1
