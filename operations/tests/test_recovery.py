"""Recovery on start, in-process: orders reconciled by client order id, positions compared,
timeouts resumed from the original opened_at, the shutdown's halt lifted."""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connections

from execution import tasks as execution_tasks
from execution.exchanges.base import BalanceLine, OrderRequest
from execution.exchanges.errors import FatalError
from execution.models import Action, ActionState, Order, OrderPurpose, OrderStatus
from execution.pipeline import order_submit
from execution.services import order_advance, run_inline
from lifecycle.models import Position, PositionState
from lifecycle.services import position_begin_close, position_request_close, timeout_pass_run
from operations.recovery import on_worker_ready, platform_recover, recover
from operations.shutdown import shutdown_run, snapshot_write
from operations.state_files import pid_path, snapshot_path, write_json_atomic
from operations.tests.conftest import START, SYMBOL, accepted_then_crashed, configure, open_entry
from risk.models import RiskAlert
from tradingsite.models import PlatformState, ReconciliationReport, StateSnapshot
from tradingsite.services import (
    is_trading_halted,
    platform_state,
    shutdown_request,
    trading_halt,
)
from tradingsite.testing.factories import (
    ExchangeAccountFactory,
    PositionFactory,
    StrategyFactory,
)

pytestmark = pytest.mark.django_db

LATER = START + timedelta(minutes=10)


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.STATE_DIR = tmp_path / "state"
    return settings.STATE_DIR


@pytest.fixture
def tracked() -> list[Order]:
    return []


@pytest.fixture
def run(tracked):
    """``recover`` with its output and the orders it handed back to the pipeline recorded."""
    lines: list[str] = []

    def run(**kwargs) -> ReconciliationReport:
        kwargs.setdefault("trigger", "test")
        return recover(out=lines.append, track=tracked.append, **kwargs)

    run.lines = lines
    return run


@pytest.fixture
def dispatched(monkeypatch) -> list[int]:
    """Action ids handed to the workers (their ``process_action`` messages)."""
    from execution.tasks import dispatch_actions

    sent: list[int] = []
    monkeypatch.setattr(execution_tasks.process_action, "delay", sent.append)
    monkeypatch.setattr(dispatch_actions, "apply_async",
                        lambda args, **kwargs: sent.extend(args[0]))
    return sent


def _filled_entry(strategy, quantity: str = "0.5") -> Order:
    """An entry that filled on the paper exchange and opened its position."""
    order = order_submit(account=strategy.account, strategy=strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal(quantity))
    return run_inline(sleep=lambda seconds: None)(order)


def test_an_order_filled_while_down_is_applied_and_opens_its_position(
        paper_strategy, paper, clock, run, tracked):
    order = accepted_then_crashed(paper_strategy, paper)
    clock.move_to(LATER)

    report = run(exclusive=True)

    order.refresh_from_db()
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, "paper-1", Decimal("0.5"))
    assert order.average_fill_price == Decimal("50005")
    assert order.filled_at == START  # the market order filled when the exchange took it
    assert len(paper.orders_with_client_id(order.client_order_id)) == 1
    assert paper.calls["place"] == 1
    position = Position.objects.get()
    assert order.position == position
    assert (position.quantity, position.entry_price, position.state, position.opened_at) == (
        Decimal("0.5"), Decimal("50005"), PositionState.OPEN, START)
    assert tracked == []
    assert report.differences == 1
    assert report.data["orders"] == [{
        "order_id": order.pk, "client_order_id": order.client_order_id,
        "account": "paper-recovery", "symbol": SYMBOL, "purpose": "entry",
        "before": "submitting", "after": "filled", "outcome": "filled",
        "detail": f"exchange: closed, filled 0.5 of 0.5: 0.5 filled while down at 50005, "
                  f"position #{position.pk} opened",
        "difference": True}]
    assert run.lines[3] == (f"  {order.client_order_id} (entry buy 0.5 {SYMBOL}): submitting → "
                            f"filled: exchange: closed, filled 0.5 of 0.5: 0.5 filled while "
                            f"down at 50005, position #{position.pk} opened")


def test_a_second_reconciliation_finds_nothing_left_to_do(paper_strategy, paper, clock, run):
    accepted_then_crashed(paper_strategy, paper)
    run(exclusive=True)

    report = run(exclusive=True)

    assert report.data["orders"] == []
    assert Position.objects.count() == 1
    assert paper.calls["place"] == 1


def test_an_order_still_open_is_tracked_again(paper_strategy, clock, run, tracked):
    configure(paper_strategy.account, faults=[{"on": "place", "kind": "stay_open"}])
    order = open_entry(paper_strategy)

    report = run(exclusive=True)

    assert [o.pk for o in tracked] == [order.pk]
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN
    assert report.data["orders"][0]["outcome"] == "tracked"
    assert report.data["orders"][0]["detail"] == ("exchange: open, filled 0 of 0.5: still open, "
                                                  "tracked again")
    assert report.differences == 0


def test_an_order_the_exchange_never_received_is_in_doubt_then_failed_and_alerted(
        paper_strategy, paper, clock, run, tracked):
    order = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                         symbol=SYMBOL, side="buy", quantity=Decimal("0.5"))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SUBMITTING, attempts=1)

    first = run(exclusive=True)  # one miss is no proof: the listing may lag

    order.refresh_from_db()
    assert (order.status, order.doubt_lookups, order.in_doubt_since) == (
        OrderStatus.SUBMITTING, 1, START)
    assert [o.pk for o in tracked] == [order.pk]
    assert first.data["orders"][0]["outcome"] == "in_doubt"
    assert not RiskAlert.objects.exists()
    clock.shift(15)
    run(exclusive=True)
    clock.shift(15)
    report = run(exclusive=True)  # the third miss, 30 s after the first: proven absent

    order.refresh_from_db()
    assert (order.status, order.error_code) == (OrderStatus.FAILED, "unknown_to_exchange")
    assert order.last_error == "not found by client order id in 3 lookups over 30 s"
    alert = RiskAlert.objects.get()
    assert (alert.kind, alert.severity, alert.position) == ("order_unknown", "WARNING", None)
    assert alert.message == (f"Reconciliation: unknown to the exchange, marked "
                             f"{order.client_order_id} (entry {SYMBOL}, failed)")
    assert report.differences == 1
    assert not Position.objects.exists()


def test_an_attempt_another_worker_may_still_be_sending_is_left_to_it(paper_strategy, paper,
                                                                       clock, run, tracked):
    order = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                         symbol=SYMBOL, side="buy", quantity=Decimal("0.5"))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SUBMITTING, attempts=1,
                                             lease_holder="worker-2:42",
                                             lease_until=START + timedelta(seconds=12))

    report = run(exclusive=False)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTING
    assert [o.pk for o in tracked] == [order.pk]
    assert report.data["orders"][0]["outcome"] == "left"
    assert report.data["orders"][0]["detail"] == (
        "not found; held by worker-2:42 until 12:00:12: it may be sending it; left to it")
    assert Order.objects.get(pk=order.pk).doubt_lookups == 0  # no miss counted against it
    assert report.differences == 0
    assert not RiskAlert.objects.exists()


def test_a_close_filled_while_down_closes_the_position_and_settles_its_action(
        paper_strategy, paper, clock, run):
    entry = _filled_entry(paper_strategy)
    position = entry.position
    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    Action.objects.filter(pk=action.pk).update(state=ActionState.RUNNING, started_at=START)
    position_begin_close(position, reason="risk", actor="risk")
    close = accepted_then_crashed(paper_strategy, paper, side="sell",
                                  purpose=OrderPurpose.EMERGENCY_CLOSE, position=position,
                                  action=Action.objects.get(pk=action.pk))
    clock.move_to(LATER)

    run(exclusive=True)

    close.refresh_from_db()
    assert close.status == OrderStatus.FILLED
    position.refresh_from_db()
    assert (position.state, position.quantity, position.close_reason) == (
        PositionState.CLOSED, Decimal("0"), "risk")
    assert position.trade.closed_at == START
    assert Action.objects.get(pk=action.pk).state == ActionState.DONE
    assert paper.calls["place"] == 2


def test_positions_are_compared_with_the_exchange(paper_strategy, paper, clock, run):
    _filled_entry(paper_strategy)  # 0.5 long on both sides
    PositionFactory(strategy=paper_strategy, symbol="ETH/USDT:USDT", quantity=Decimal("2"))

    report = run()

    assert [(c["symbol"], c["database"], c["exchange"], c["matches"])
            for c in report.data["positions"]] == [
        (SYMBOL, "0.5", "0.5", True), ("ETH/USDT:USDT", "2", "0", False)]
    assert run.lines == [
        "reconciliation (test)",
        "last snapshot: none (first start, or the platform never stopped cleanly)",
        "orders: 0 not final in the database",
        "positions of paper-recovery: symbols matching: 1, differing: 1",
        "  ETH/USDT:USDT: database 2, exchange 0 (net, long > 0)",
        "timeouts resumed: 0 warned, 0 timed out, 0 emergency closes queued",
        f"reconciliation report #{report.pk}: open orders checked: 0; position differences: 1; "
        "timeouts resumed: 0 warned, 0 timed out, 0 emergency closes queued"]
    alert = RiskAlert.objects.get(kind="position_mismatch")
    assert (alert.severity, alert.message) == (
        "CRITICAL", "Reconciliation: positions differ from the exchange: paper-recovery "
                    "ETH/USDT:USDT database 2 exchange 0")
    assert report.differences == 1


def test_a_paper_book_that_restarted_empty_is_not_compared(paper_strategy, clock, run):
    PositionFactory(strategy=paper_strategy, symbol=SYMBOL)

    report = run()

    assert report.data["positions"] == []
    assert report.data["accounts"] == [{"account": "paper-recovery", "positions": "skipped",
                                        "detail": "paper book restarted with this process"}]
    assert report.differences == 0


class SpotWallet:
    """A spot exchange: no position list, coins in a wallet."""

    def fetch_balance(self):
        return {"BTC": BalanceLine("BTC", Decimal("0.2"), Decimal("0"), Decimal("0.2")),
                "ETH": BalanceLine("ETH", Decimal("3"), Decimal("0"), Decimal("3")),
                "USDT": BalanceLine("USDT", Decimal("900"), Decimal("0"), Decimal("900"))}


def test_a_spot_account_is_compared_by_the_balance_of_its_base_currency(clock, run):
    account = ExchangeAccountFactory(name="spot-main", exchange_id="binance", market_type="spot")
    strategy = StrategyFactory(name="spot-s", account=account)
    PositionFactory(strategy=strategy, symbol="BTC/USDT", quantity=Decimal("0.25"))

    report = run(exchange_of=lambda account: SpotWallet())

    assert report.data["positions"] == [{"account": "spot-main", "symbol": "BTC/USDT",
                                         "database": "0.25", "exchange": "0.2",
                                         "matches": False}]


def test_an_unreachable_exchange_is_reported_and_keeps_the_shutdown_halt(paper_strategy, clock,
                                                                          run):
    order = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                         symbol=SYMBOL, side="buy", quantity=Decimal("0.5"))
    trading_halt(reason="shutdown", actor="shutdown")

    def unreachable(account):
        raise FatalError("invalid api key", code="10003")

    report = run(on_start=True, exchange_of=unreachable)

    assert report.data["errors"] == ["account paper-recovery: invalid api key"]
    assert [(c["outcome"], c["detail"]) for c in report.data["orders"]] == [
        ("error", "exchange not reachable: not checked")]
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CREATED
    assert report.data["halt"] == "shutdown halt kept (errors: 1): check, then run resume_trading"
    assert is_trading_halted()


def test_a_dry_run_reads_and_reports_but_changes_nothing(paper_strategy, paper, clock, run,
                                                         tracked):
    order = accepted_then_crashed(paper_strategy, paper)
    PositionFactory(strategy=paper_strategy, symbol=SYMBOL,
                    opened_at=START - timedelta(minutes=250))

    report = run(dry_run=True, exclusive=True, on_start=True)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTING
    assert Position.objects.get().state == PositionState.OPEN
    assert tracked == [] and not RiskAlert.objects.exists() and not Action.objects.exists()
    assert report.dry_run is True
    assert report.data["orders"][0]["detail"] == ("exchange: closed, filled 0.5 of 0.5: would "
                                                  "be applied")
    assert report.data["timeouts"]["summary"] == "positions past a holding-time limit: 1"
    assert report.summary.startswith("dry run: open orders checked: 1 (filled while down: 1)")


def test_the_shutdown_halt_is_lifted_on_start_when_everything_is_in_line(paper_strategy,
                                                                         clock, run):
    trading_halt(reason="shutdown", actor="shutdown")

    report = run(on_start=True)

    assert not is_trading_halted()
    assert report.data["halt"] == "shutdown halt lifted"
    assert platform_state().halted_by == "recovery"


def test_the_shutdown_halt_is_kept_while_positions_differ(paper_strategy, paper, clock, run):
    _filled_entry(paper_strategy)
    PositionFactory(strategy=paper_strategy, symbol="ETH/USDT:USDT")
    trading_halt(reason="shutdown", actor="shutdown")

    report = run(on_start=True)

    assert is_trading_halted()
    assert report.data["halt"] == ("shutdown halt kept (position differences: 1): check, then "
                                   "run resume_trading")


def test_an_operators_halt_is_never_lifted_by_a_start(clock, run):
    trading_halt(reason="exchange maintenance", actor="alice")

    report = run(on_start=True)

    assert is_trading_halted()
    assert report.data["halt"] == ("halt kept: set by alice (exchange maintenance); lift it "
                                   "with resume_trading")


def test_the_reconcile_command_does_not_lift_the_halt(clock, capsys):
    trading_halt(reason="shutdown", actor="shutdown")

    call_command("reconcile")

    assert is_trading_halted()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "reconciliation (reconcile command)"
    assert out[-1] == "0 differences"
    assert ReconciliationReport.objects.get().data["trigger"] == "reconcile command"


def test_the_reconcile_command_without_redis_finishes_the_orders_it_found(
        paper_strategy, paper, clock, capsys, settings, monkeypatch):
    from operations.management.commands import reconcile

    settings.REDIS_URL = ""  # the in-memory broker would die with the command
    monkeypatch.setattr(reconcile.Command, "sleep", staticmethod(clock.shift))
    configure(paper_strategy.account, faults=[{"on": "place", "kind": "stay_open"}])
    resting = open_entry(paper_strategy)  # open on the exchange: polled until its timeout
    unsent = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                          symbol=SYMBOL, side="sell", quantity=Decimal("0.2"))
    # its one send got no answer and no retry is left: it can only be looked up
    Order.objects.filter(pk=unsent.pk).update(status=OrderStatus.UNKNOWN, attempts=1)

    call_command("reconcile")

    assert not Order.objects.filter(status__in=OrderStatus.active()).exists()
    resting.refresh_from_db()
    assert (resting.status, resting.timed_out, resting.finalized_at) == (
        OrderStatus.CANCELLED, True, START + timedelta(seconds=30))
    unsent.refresh_from_db()  # not found at 0, 10, 20 and 30 s: in doubt, then absent
    assert (unsent.status, unsent.finalized_at) == (OrderStatus.FAILED,
                                                    START + timedelta(seconds=30))
    assert (paper.orders["paper-1"].status, paper.calls["place"]) == ("canceled", 1)
    out = capsys.readouterr().out.splitlines()
    assert ("no Redis: driving the 2 orders it tracks here until they end (the in-memory "
            "broker would lose them)") in out
    assert f"  {resting.client_order_id}: cancelled" in out
    assert f"  {unsent.client_order_id}: failed" in out


def test_the_newer_of_the_database_and_file_snapshots_is_read(paper_strategy, clock, run):
    snapshot_write(reason="SIGTERM")
    clock.move_to(LATER)
    newer = dict(StateSnapshot.objects.get().data, created_at=LATER.isoformat(), clean=False,
                 unfinished=["cancel open orders"],
                 orders=[{"client_order_id": "o-lost", "symbol": SYMBOL}])
    write_json_atomic(snapshot_path(), newer)

    report = run()

    assert report.data["last_snapshot"] == {
        "source": str(snapshot_path()), "created_at": LATER.isoformat(), "reason": "SIGTERM",
        "clean": False, "unfinished": ["cancel open orders"], "open_orders": 1,
        "open_positions": 0, "trading_halted": False}
    assert report.data["errors"] == ["the snapshot lists order o-lost, the database does not "
                                     "hold it"]
    assert run.lines[1] == (f"last snapshot: {LATER.isoformat()} from {snapshot_path()}: "
                            "stopped NOT cleanly, unfinished: cancel open orders; open orders: 1, "
                            "open positions: 0")


def test_the_startup_hook_clears_a_stale_request_records_its_pid_and_notes_a_crash(clock):
    shutdown_request(actor="operator")
    write_json_atomic(pid_path(), {"pid": 2 ** 22 + 1, "host": socket.gethostname(),
                                   "started_at": START.isoformat()})
    lines: list[str] = []
    platform = SimpleNamespace(options=SimpleNamespace(run_worker=True), out=lines.append)

    platform_recover(platform)

    assert PlatformState.objects.get().shutdown_requested_at is None
    assert json.loads(pid_path().read_text(encoding="utf-8"))["pid"] == os.getpid()
    assert lines[:2] == [
        "    reconciliation (runplatform start)",
        f"    the previous run (pid {2 ** 22 + 1} on {socket.gethostname()}, started "
        f"{START.isoformat()}) ended without a clean stop: crashed or killed"]
    report = ReconciliationReport.objects.get()
    assert report.data["trigger"] == "runplatform start"


def test_a_production_worker_recovers_when_ready(clock):
    on_worker_ready(sender=SimpleNamespace(hostname="celery@box"))

    assert ReconciliationReport.objects.get().data["trigger"] == "worker start (celery@box)"


def test_a_failing_recovery_does_not_stop_the_worker(clock, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database restarting")

    monkeypatch.setattr("operations.recovery.recover", broken)

    on_worker_ready(sender=SimpleNamespace(hostname="celery@box"))

    assert "recovery on worker start failed; the worker runs on" in caplog.text


# --- a worker killed mid-placement: the redelivered task finishes it, once -------------------------

class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after the exchange call runs in the dying worker."""


class DiesAfterTheExchangeAccepts:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def place_order(self, request: OrderRequest):
        self.inner.place_order(request)
        raise WorkerKilled


def test_a_redelivered_task_finishes_a_placement_its_killed_worker_started(
        paper_strategy, paper, clock, monkeypatch):
    order = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                         symbol=SYMBOL, side="buy", quantity=Decimal("0.5"))
    with pytest.raises(WorkerKilled):
        order_advance(order, exchange=DiesAfterTheExchangeAccepts(paper))
    assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTING
    scheduled: list[float] = []
    monkeypatch.setattr(execution_tasks, "schedule_next",
                        lambda step: scheduled.append(step.delay))

    execution_tasks.drive_order(order.pk)  # redelivered at once: the attempt may be in flight
    clock.shift(scheduled[-1])
    execution_tasks.drive_order(order.pk)  # the step it scheduled: looks the order up

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert scheduled == [15.0]  # the exchange timeout (10 s) + 5 s
    assert len(paper.orders_with_client_id(order.client_order_id)) == 1
    assert paper.calls["place"] == 1
    assert Position.objects.get().quantity == Decimal("0.5")


def test_every_task_is_acknowledged_late_and_rejected_when_its_worker_is_lost():
    from tradingsite.celery import app

    app.loader.import_default_modules()
    ours = [task for name, task in app.tasks.items() if not name.startswith("celery.")]
    assert ours
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert [t.name for t in ours if not t.acks_late] == []


# --- downtime: a position that passed its limit while the platform was down ------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_a_position_past_its_limit_while_down_is_closed_on_start_with_reason_timeout(
        paper_strategy, clock, dispatched):
    paper = configure(paper_strategy.account)
    position = _filled_entry(paper_strategy).position
    clock.move_to(START + timedelta(minutes=200))
    timeout_pass_run()  # the platform runs: WARNING at 180 min
    assert Position.objects.get().state == PositionState.WARNING
    shutdown = shutdown_run(timeout=10, reason="SIGTERM", out=lambda line: None)
    assert shutdown.clean and [p["id"] for p in shutdown.snapshot.data["positions"]] == [
        position.pk]

    clock.move_to(START + timedelta(minutes=250))  # down for 50 minutes
    lines: list[str] = []
    platform_recover(SimpleNamespace(options=SimpleNamespace(run_worker=True),
                                     out=lines.append))
    for action_id in dispatched:  # what the worker runs once it is up
        execution_tasks.process_action(action_id)
    connections.close_all()

    stored = Position.objects.get(pk=position.pk)
    assert (stored.state, stored.close_reason) == (PositionState.CLOSED, "timeout")
    assert stored.trade.exit_reason == "timeout"
    assert stored.trade.holding_seconds == 250 * 60
    assert "    timeouts resumed: 0 warned, 1 timed out, 1 emergency closes queued" in lines
    assert "    shutdown halt lifted" in lines
    assert not is_trading_halted()
    assert paper.calls["place"] == 2


def test_the_admin_action_reconciles_now(admin_client, clock):
    state = platform_state()

    response = admin_client.post("/admin/tradingsite/platformstate/", {
        "action": "reconcile", "_selected_action": [state.pk]}, follow=True)

    report = ReconciliationReport.objects.get()
    assert report.data["trigger"] == "admin (admin)"
    assert [str(m) for m in response.context["messages"]] == [
        f"Reconciliation report #{report.pk}: {report.summary}"]
