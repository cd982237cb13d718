"""The shutdown sequence in-process: halt, cancel and verify, close, snapshot, deadlines."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from execution.exchanges.base import CANCELED, CLOSED
from execution.models import Action, ActionKind, Order, OrderPurpose, OrderStatus
from execution.pipeline import order_submit
from lifecycle.models import Position, PositionState, Trade
from operations.shutdown import ShutdownIncomplete, platform_shutdown, shutdown_requested, shutdown_run
from operations.state_files import pid_file_write, pid_path, snapshot_path, write_json_atomic
from operations.tests.conftest import START, SYMBOL, configure, open_entry
from tradingsite.errors import TradingHalted
from tradingsite.models import PlatformState, StateSnapshot
from tradingsite.services import is_trading_halted, shutdown_request, trading_halt
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db(transaction=True)

STAY_OPEN = {"on": "place", "kind": "stay_open", "times": 5}


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.STATE_DIR = tmp_path / "state"
    return settings.STATE_DIR


def _join_abandoned_steps() -> None:
    """Let an abandoned step thread finish before the test database is flushed."""
    for thread in threading.enumerate():
        if thread.name == "shutdown-steps":
            thread.join(5)


def _entry(strategy, **fields) -> Order:
    return order_submit(account=strategy.account, strategy=strategy, symbol=SYMBOL, **fields)


def _position(strategy, *, minutes: int, quantity: str = "0.5") -> Position:
    opened = START - timedelta(minutes=minutes)
    return PositionFactory(strategy=strategy, symbol=SYMBOL, quantity=Decimal(quantity),
                           entry_price=Decimal("49000"), opened_at=opened)


def test_shutdown_halts_entries_cancels_open_orders_and_writes_the_snapshot(paper_strategy,
                                                                           clock):
    paper = configure(paper_strategy.account, faults=[STAY_OPEN])
    buy = open_entry(paper_strategy, quantity="0.5")
    sell = open_entry(paper_strategy, quantity="0.2", side="sell")
    held = _position(paper_strategy, minutes=30)
    lines: list[str] = []

    outcome = shutdown_run(timeout=10, reason="SIGTERM", out=lines.append)

    assert (outcome.clean, outcome.exit_code, outcome.unfinished) == (True, 0, [])
    assert lines == [
        "    halt entries: new entries refused",
        f"    cancel open orders: {buy.client_order_id}: cancelled",
        f"    cancel open orders: {sell.client_order_id}: cancelled",
        "    close open positions: positions kept open (closePositionsOnShutdown=false): 1",
        f"    snapshot: {snapshot_path()} (open positions: 1, open orders: 0, trading halted)",
    ]
    assert [o.status for o in Order.objects.order_by("pk")] == [OrderStatus.CANCELLED] * 2
    assert [o.status for o in paper.orders.values()] == [CANCELED, CANCELED]
    state = PlatformState.objects.get()
    assert (state.trading_halted, state.halt_reason, state.halted_by) == (
        True, "shutdown", "shutdown")

    data = json.loads(snapshot_path().read_text(encoding="utf-8"))
    assert data == outcome.snapshot.data
    assert (data["format"], data["reason"], data["clean"], data["unfinished"]) == (
        1, "SIGTERM", True, [])
    assert data["created_at"] == data["shutdown_started_at"] == START.isoformat()
    assert data["trading"] == {"halted": True, "halt_reason": "shutdown",
                               "halted_by": "shutdown", "halted_at": START.isoformat()}
    assert data["positions"] == [{
        "id": held.pk, "strategy": "recovery-strategy", "account": "paper-recovery",
        "symbol": SYMBOL, "side": "long", "quantity": "0.5", "entry_price": "49000",
        "opened_at": (START - timedelta(minutes=30)).isoformat(), "state": "OPEN",
        "close_reason": ""}]
    assert data["orders"] == []
    assert [step["status"] for step in data["steps"]] == ["done", "done", "done"]
    snapshot = StateSnapshot.objects.get()
    assert (snapshot.reason, snapshot.clean, snapshot.unfinished) == ("SIGTERM", True, [])


def test_an_order_that_fills_during_the_cancel_is_applied_not_lost(paper_strategy, clock):
    paper = configure(paper_strategy.account, faults=[
        STAY_OPEN, {"on": "cancel", "kind": "fill_on_cancel"}])
    order = open_entry(paper_strategy, quantity="0.5")
    lines: list[str] = []

    outcome = shutdown_run(timeout=10, reason="SIGTERM", out=lines.append)

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == Decimal("0.5")
    position = Position.objects.get()
    assert order.position == position
    assert (position.quantity, position.state) == (Decimal("0.5"), PositionState.OPEN)
    assert [o.status for o in paper.orders.values()] == [CLOSED]
    assert (f"    cancel open orders: {order.client_order_id}: filled during the cancel "
            f"(0.5 of 0.5, position #{position.pk} opened)") in lines
    assert [p["id"] for p in outcome.snapshot.data["positions"]] == [position.pk]


def test_exit_orders_in_flight_are_left_to_finish(paper_strategy, clock):
    configure(paper_strategy.account, faults=[STAY_OPEN])
    position = _position(paper_strategy, minutes=10)
    close = _entry(paper_strategy, side="sell", quantity=Decimal("0.5"),
                   purpose=OrderPurpose.CLOSE, position=position, reduce_only=True)
    lines: list[str] = []

    outcome = shutdown_run(timeout=10, reason="SIGTERM", out=lines.append)

    assert outcome.clean
    assert Order.objects.get(pk=close.pk).status == OrderStatus.CREATED
    assert lines[1:3] == ["    cancel open orders: exit orders left to finish: 1",
                          "    cancel open orders: no open entry orders"]
    assert [o["client_order_id"] for o in outcome.snapshot.data["orders"]] == [
        close.client_order_id]


def test_close_positions_on_shutdown_closes_them_with_exit_reason_shutdown(paper_strategy,
                                                                            clock, monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__SHUTDOWN__CLOSE_POSITIONS_ON_SHUTDOWN", "true")
    paper = configure(paper_strategy.account)
    first = _position(paper_strategy, minutes=30)
    second = _position(paper_strategy, minutes=5, quantity="0.2")
    lines: list[str] = []

    outcome = shutdown_run(timeout=10, reason="SIGINT", out=lines.append)

    assert outcome.clean
    trades = Trade.objects.order_by("position_id")
    assert [(t.position_id, t.exit_reason, t.quantity) for t in trades] == [
        (first.pk, "shutdown", Decimal("0.5")), (second.pk, "shutdown", Decimal("0.2"))]
    assert {a.kind for a in Action.objects.all()} == {ActionKind.CLOSE_ON_SHUTDOWN}
    assert paper.calls["place"] == 2
    # 0.5 × (49 995 − 49 000) − fee 0.5 × 49 995 × 0.055 % = 483.751375
    assert lines[2:4] == [f"    close open positions: position #{first.pk} {SYMBOL} closed "
                          "(pnl 483.751375)",
                          f"    close open positions: position #{second.pk} {SYMBOL} closed "
                          "(pnl 193.50055)"]
    assert outcome.snapshot.data["positions"] == []


def test_an_operators_halt_is_kept_as_it_is(paper_strategy, clock):
    trading_halt(reason="exchange maintenance", actor="alice")
    lines: list[str] = []

    shutdown_run(timeout=10, reason="SIGTERM", out=lines.append)

    assert lines[0] == ("    halt entries: already halted (exchange maintenance, by alice): "
                        "kept")
    state = PlatformState.objects.get()
    assert (state.halt_reason, state.halted_by) == ("exchange maintenance", "alice")


class HangingCancels:
    """An exchange whose cancel call never returns until released (a hung connection)."""

    def __init__(self, inner):
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def cancel_order(self, order_id, symbol):
        self.entered.set()
        self.release.wait(10)
        return self.inner.cancel_order(order_id, symbol)


def test_a_hanging_exchange_call_still_gets_the_snapshot_written_and_exits_1(paper_strategy,
                                                                            clock):
    paper = configure(paper_strategy.account, faults=[STAY_OPEN])
    order = open_entry(paper_strategy)
    hanging = HangingCancels(paper)
    lines: list[str] = []
    started = time.monotonic()
    try:
        outcome = shutdown_run(timeout=1.5, reason="SIGTERM", out=lines.append,
                               exchange_of=lambda account: hanging)
        elapsed = time.monotonic() - started
    finally:
        hanging.release.set()
        _join_abandoned_steps()

    assert hanging.entered.is_set()
    # 1.5 s less the snapshot reserve (a quarter of it), then the snapshot; the budget leaves
    # the halt step (a few writes) time to finish on a slow machine, the hung cancel never does
    assert 1.1 <= elapsed < 2.5
    assert (outcome.clean, outcome.exit_code) == (False, 1)
    assert outcome.unfinished == ["cancel open orders", "close open positions"]
    assert outcome.why == "past shutdownTimeoutSeconds=1.5"
    data = json.loads(snapshot_path().read_text(encoding="utf-8"))
    assert (data["clean"], data["unfinished"]) == (False, ["cancel open orders",
                                                           "close open positions"])
    assert [step["status"] for step in data["steps"]] == ["done", "abandoned", "abandoned"]
    assert [(o["client_order_id"], o["status"]) for o in data["orders"]] == [
        (order.client_order_id, OrderStatus.CANCELLING)]
    assert data["trading"]["halted"] is True
    assert lines[-1] == ("    unfinished (past shutdownTimeoutSeconds=1.5): cancel open orders, "
                         "close open positions")
    assert StateSnapshot.objects.get().clean is False


def test_a_second_signal_writes_the_snapshot_at_once(paper_strategy, clock):
    paper = configure(paper_strategy.account, faults=[STAY_OPEN])
    open_entry(paper_strategy)
    hanging = HangingCancels(paper)
    force = threading.Event()
    threading.Thread(target=lambda: hanging.entered.wait(5) and force.set(), daemon=True).start()
    started = time.monotonic()
    try:
        outcome = shutdown_run(timeout=60, reason="SIGTERM", force=force, out=lambda line: None,
                               exchange_of=lambda account: hanging)
    finally:
        hanging.release.set()
        _join_abandoned_steps()

    assert time.monotonic() - started < 2
    assert outcome.why == "forced by a second signal"
    assert outcome.unfinished == ["cancel open orders", "close open positions"]
    assert snapshot_path().exists()


def test_the_platform_hook_raises_when_unfinished_and_removes_its_pid_file(paper_strategy, clock,
                                                                          monkeypatch):
    paper = configure(paper_strategy.account, faults=[STAY_OPEN])
    open_entry(paper_strategy)
    hanging = HangingCancels(paper)
    pid_file_write(START)
    lines: list[str] = []
    platform = SimpleNamespace(seconds_left=lambda: 1.5, stop_reason="SIGTERM",
                               options=SimpleNamespace(shutdown_timeout=1.5, run_worker=True,
                                                       run_beat=True),
                               force_requested=threading.Event(), out=lines.append)
    monkeypatch.setattr("operations.shutdown.exchange_for", lambda account: hanging)
    try:
        with pytest.raises(ShutdownIncomplete, match=r"past shutdownTimeoutSeconds=1\.5; "
                                                     r"unfinished: cancel open orders"):
            platform_shutdown(platform)
    finally:
        hanging.release.set()
        _join_abandoned_steps()
    assert not pid_path().exists()
    assert snapshot_path().exists()


def test_a_clean_platform_hook_returns_and_leaves_no_pid_file(paper_strategy, clock):
    pid_file_write(START)
    platform = SimpleNamespace(seconds_left=lambda: 10.0, stop_reason="SIGTERM",
                               options=SimpleNamespace(shutdown_timeout=10.0, run_worker=True,
                                                       run_beat=True),
                               force_requested=threading.Event(), out=lambda line: None)

    platform_shutdown(platform)

    assert not pid_path().exists()
    assert StateSnapshot.objects.get().clean is True


def test_entries_are_refused_while_halted_and_exits_go_through(paper_strategy, clock):
    trading_halt(reason="shutdown", actor="shutdown")
    with pytest.raises(TradingHalted, match="trading is halted: shutdown"):
        _entry(paper_strategy, side="buy", quantity=Decimal("0.5"))
    position = _position(paper_strategy, minutes=10)
    close = _entry(paper_strategy, side="sell", quantity=Decimal("0.5"),
                   purpose=OrderPurpose.CLOSE, position=position, reduce_only=True)
    assert close.status == OrderStatus.CREATED


def test_an_entry_recorded_before_the_halt_is_not_sent_after_it(paper_strategy, clock, paper):
    from execution.services import order_advance

    order = _entry(paper_strategy, side="buy", quantity=Decimal("0.5"))
    trading_halt(reason="shutdown", actor="shutdown")

    step = order_advance(order)

    assert step.order.status == OrderStatus.REJECTED
    assert step.order.error_code == "trading_halted"
    assert step.order.last_error == ("trading is halted: shutdown (by shutdown): entry not sent")
    assert paper.calls["place"] == 0


def test_the_api_answers_409_for_an_entry_while_halted(paper_strategy, staff_user, clock):
    trading_halt(reason="shutdown", actor="shutdown")
    client = APIClient()
    client.force_authenticate(staff_user)

    response = client.post("/api/execution/orders/place", {
        "strategy": paper_strategy.name, "symbol": SYMBOL, "side": "buy", "quantity": "0.5"},
        format="json")

    assert response.status_code == 409
    body = response.json()
    assert {key: body[key] for key in ("detail", "code", "reason_code", "scope")} == {
        "detail": "trading is halted: shutdown (by shutdown)", "code": "trading_halted",
        "reason_code": "TRADING_HALTED", "scope": "global"}
    assert (body["numbers"]["state"], body["numbers"]["reason"]) == ("HALTED", "shutdown")
    assert not Order.objects.exists()


def test_write_json_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state" / "snapshot.json"
    write_json_atomic(target, {"n": 1})
    write_json_atomic(target, {"n": 2})
    assert json.loads(target.read_text(encoding="utf-8")) == {"n": 2}
    assert [p.name for p in target.parent.iterdir()] == ["snapshot.json"]


def test_the_stop_check_answers_a_request_made_by_shutdown_platform(clock):
    platform = SimpleNamespace(stop_requested=threading.Event())
    assert shutdown_requested(platform) == ""
    shutdown_request(actor="operator")
    assert shutdown_requested(platform) == ("shutdown requested by shutdown_platform at "
                                            "2026-03-02 12:00:00 UTC")
    platform.stop_requested.set()  # already stopping: a second request would force it
    assert shutdown_requested(platform) == ""


@pytest.fixture
def fake_runplatform():
    """A process whose command line names runplatform, as ``manage.py runplatform`` does."""
    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()", "runplatform"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_shutdown_platform_signals_the_local_runplatform_and_sets_the_flag(
        fake_runplatform, clock, capsys):
    write_json_atomic(pid_path(), {"pid": fake_runplatform.pid, "host": socket.gethostname(),
                                   "started_at": START.isoformat()})

    call_command("shutdown_platform", "--wait", "10")

    assert fake_runplatform.wait(1) == -signal.SIGTERM
    assert PlatformState.objects.get().shutdown_requested_at == START
    assert capsys.readouterr().out.splitlines() == [
        f"sent SIGTERM to runplatform (pid {fake_runplatform.pid})",
        "shutdown requested at 2026-03-02 12:00:00 UTC: running runplatform instances stop "
        "gracefully",
        f"runplatform (pid {fake_runplatform.pid}) exited"]


def test_shutdown_platform_never_signals_a_process_that_is_not_runplatform(clock, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        write_json_atomic(pid_path(), {"pid": other.pid, "host": socket.gethostname(),
                                       "started_at": START.isoformat()})
        call_command("shutdown_platform")
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(10)
    assert "sent SIGTERM" not in capsys.readouterr().out


def test_shutdown_platform_run_here_runs_the_sequence(paper_strategy, clock, capsys):
    configure(paper_strategy.account, faults=[STAY_OPEN])
    order = open_entry(paper_strategy)

    call_command("shutdown_platform", "--run-here")

    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    assert is_trading_halted()
    out = capsys.readouterr().out.splitlines()
    assert out[1:4] == ["shutdown sequence:", "    halt entries: new entries refused",
                        f"    cancel open orders: {order.client_order_id}: cancelled"]
    assert StateSnapshot.objects.get().reason == "shutdown_platform"
