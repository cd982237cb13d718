"""Graceful shutdown: stop new entries, cancel orders, optionally close, keep a snapshot.

The sequence (``shutdown_run``), on SIGINT/SIGTERM of a ``runplatform`` that runs the
worker or beat (its shutdown hook ``platform_shutdown``; a web-only instance,
``--no-worker --no-beat``, halts nothing) or from ``manage.py shutdown_platform --run-here``:

1. halt new entries (``trading_halt`` with reason ``shutdown``; an operator's halt is kept);
2. when ``cancelOrdersOnShutdown``: cancel every active entry order and read each one
   back from the exchange — a fill that happened during the cancel is applied, not
   lost. Exit orders in flight are left to finish: they reduce risk;
3. when ``closePositionsOnShutdown``: close every open position through the action
   queue (kind ``close_on_shutdown``, exit reason ``shutdown``) and wait for the fills;
4. write a state snapshot — a ``StateSnapshot`` row and ``STATE_DIR/snapshot.json``
   (written atomically) — with the open positions, open orders, the halt flag and
   timestamps.

Steps 1–3 run on their own thread with a deadline (``shutdownTimeoutSeconds`` minus a
reserve for the snapshot). When the deadline passes or a second signal arrives, the
steps are abandoned, the snapshot is written anyway, the unfinished steps are named
and the exit code is non-zero. The snapshot is written on a non-daemon thread, so
the process cannot exit half-way through it.

The halt set here (reason ``shutdown`` by ``shutdown``) is lifted by the recovery on
the next start once reconciliation succeeds; a halt an operator set stays.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connections
from django.utils import timezone

from execution.exchanges import exchange_for
from execution.models import Action, ActionKind, ActionState, Order, OrderPurpose, OrderStatus
from execution.pipeline import order_begin_cancel, plain
from execution.services import action_process, order_advance, run_inline
from lifecycle.models import Position, PositionState
from lifecycle.services import position_request_close
from operations.runtime import runs_trading
from operations.state_files import pid_file_remove, snapshot_path, write_json_atomic
from tradingsite.domain import CloseReason
from tradingsite.errors import InvalidStateTransition
from tradingsite.live_config import site_config
from tradingsite.models import PlatformState, StateSnapshot
from tradingsite.services import platform_state, trading_halt

log = logging.getLogger(__name__)

Output = Callable[[str], None]

SHUTDOWN_ACTOR = "shutdown"
SHUTDOWN_HALT_REASON = "shutdown"
SNAPSHOT_FORMAT = 1
# Time kept back from the steps for writing the snapshot: a quarter of the timeout, ≤ 1 s.
SNAPSHOT_RESERVE_SECONDS = 1.0
POLL_SECONDS = 0.05


class StepAbandoned(Exception):
    """Raised inside a shutdown step once the coordinator has given up on it."""


# --- the steps ----------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    status: str = "pending"  # pending | running | done | failed | abandoned
    lines: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status == "done"

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.name, "status": self.status, "details": self.lines}


STEP_NAMES = ("halt entries", "cancel open orders", "close open positions")


class Steps:
    """What the step thread did so far, readable by the coordinator at any time."""

    def __init__(self, out: Output, stop: threading.Event):
        self.results = [StepResult(name) for name in STEP_NAMES]
        self.out = out
        self.stop = stop

    def note(self, result: StepResult, line: str) -> None:
        if self.stop.is_set():  # abandoned: the snapshot has been written without it
            return
        result.lines.append(line)
        self.out(f"    {result.name}: {line}")

    def sleep(self, seconds: float) -> None:
        """A sleep that ends the step at once when the coordinator gives up."""
        if self.stop.wait(seconds):
            raise StepAbandoned

    def unfinished(self) -> list[str]:
        return [result.name for result in self.results if not result.finished]


def halt_entries(steps: Steps, result: StepResult) -> None:
    state = platform_state()
    if state.trading_halted:
        steps.note(result, f"already halted ({state.halt_reason or 'no reason'}, by "
                           f"{state.halted_by or 'unknown'}): kept")
        return
    trading_halt(reason=SHUTDOWN_HALT_REASON, actor=SHUTDOWN_ACTOR)
    steps.note(result, "new entries refused")


def _order_cancel_wanted(order: Any) -> bool:
    """``cancelOrdersOnShutdown`` of the order's strategy (the site config without one)."""
    cfg = order.strategy.effective_config() if order.strategy_id else site_config()
    return cfg.shutdown.cancel_orders_on_shutdown


def cancel_open_orders(steps: Steps, result: StepResult, *,
                       exchange_of: Callable[[Any], Any]) -> None:
    """Cancel active entry orders and read each back: the exchange decides the outcome."""
    orders = list(Order.objects.filter(status__in=OrderStatus.active(),
                                       purpose=OrderPurpose.ENTRY)
                  .select_related("account", "strategy", "position", "action")
                  .order_by("created_at", "pk"))
    wanted = [order for order in orders if _order_cancel_wanted(order)]
    exits = Order.objects.filter(status__in=OrderStatus.active()).exclude(
        purpose=OrderPurpose.ENTRY).count()
    if len(wanted) < len(orders):
        steps.note(result, f"entry orders kept open (cancelOrdersOnShutdown=false): "
                           f"{len(orders) - len(wanted)}")
    if exits:
        steps.note(result, f"exit orders left to finish: {exits}")
    if not wanted:
        steps.note(result, "no open entry orders")
        return
    failed = 0
    for order in wanted:
        try:
            order_begin_cancel(order, reason=f"cancelled by {SHUTDOWN_ACTOR}")
            exchange = exchange_of(order.account)
            step = order_advance(order, exchange=exchange)
            while not step.done:
                steps.sleep(step.delay or POLL_SECONDS)
                step = order_advance(Order.objects.select_related(
                    "account", "strategy", "position", "action").get(pk=order.pk),
                    exchange=exchange)
        except StepAbandoned:
            raise
        except Exception as exc:  # one order's failure must not stop the others
            failed += 1
            steps.note(result, f"{order.client_order_id}: cancel failed: {exc}")
            continue
        steps.note(result, _cancel_outcome(Order.objects.get(pk=order.pk)))
    if failed:
        raise RuntimeError(f"orders not confirmed cancelled: {failed} of {len(wanted)}")


def _cancel_outcome(order: Any) -> str:
    filled = f"{plain(order.filled_quantity)} of {plain(order.quantity)}"
    opened = f", position #{order.position_id} opened" if order.position_id else ""
    if order.status == OrderStatus.FILLED:
        return f"{order.client_order_id}: filled during the cancel ({filled}{opened})"
    if order.filled_quantity:
        return (f"{order.client_order_id}: {order.status}, {filled} filled before the cancel"
                f"{opened}")
    return f"{order.client_order_id}: {order.status}"


def close_open_positions(steps: Steps, result: StepResult) -> None:
    """Queue a ``close_on_shutdown`` for every open position, drive them, wait for the end.

    The action queue's claim decides who runs each close: this thread or a worker
    that picked the task first; either way the close ends once.
    """
    positions = list(Position.objects.filter(state__in=PositionState.active())
                     .select_related("strategy__account").order_by("opened_at", "pk"))
    wanted = [p for p in positions
              if p.strategy.effective_config().shutdown.close_positions_on_shutdown]
    if len(wanted) < len(positions):
        steps.note(result, f"positions kept open (closePositionsOnShutdown=false): "
                           f"{len(positions) - len(wanted)}")
    if not wanted:
        return
    actions = []
    for position in wanted:
        try:
            actions.append(position_request_close(
                position=position, reason=CloseReason.SHUTDOWN, actor=SHUTDOWN_ACTOR,
                kind=ActionKind.CLOSE_ON_SHUTDOWN)[0])
        except InvalidStateTransition:  # closed since it was read
            steps.note(result, f"position #{position.pk} {position.symbol}: already closed")
    drive = run_inline(sleep=steps.sleep)
    for action in actions:
        if action.state == ActionState.PENDING:
            action_process(action.pk, drive=drive)
    ids = [action.pk for action in actions]
    while Action.objects.filter(pk__in=ids, state__in=ActionState.open()).exists():
        steps.sleep(POLL_SECONDS * 2)
    failed = 0
    for action in Action.objects.filter(pk__in=ids).select_related("position").order_by("pk"):
        position = action.position
        if action.state == ActionState.DONE:
            pnl = action.result.get("pnl")
            steps.note(result, f"position #{position.pk} {position.symbol} closed"
                               + (f" (pnl {pnl})" if pnl is not None else ""))
        else:
            failed += 1
            steps.note(result, f"position #{position.pk} {position.symbol}: close "
                               f"{action.state}: {action.error or 'no detail'}")
    if failed:
        raise RuntimeError(f"positions not closed: {failed} of {len(ids)}")


def _run_steps(steps: Steps, exchange_of: Callable[[Any], Any]) -> None:
    """Steps 1–3 in order; a failed step is recorded and the next one still runs."""
    halt, cancel, close = steps.results
    plan: list[tuple[StepResult, Callable[[], None]]] = [
        (halt, lambda: halt_entries(steps, halt)),
        (cancel, lambda: cancel_open_orders(steps, cancel, exchange_of=exchange_of)),
        (close, lambda: close_open_positions(steps, close)),
    ]
    try:
        for result, run in plan:
            if steps.stop.is_set():
                return
            result.status = "running"
            try:
                run()
            except StepAbandoned:
                return
            except Exception as exc:
                log.exception("shutdown step %s failed", result.name)
                steps.note(result, f"failed: {exc}")
                if not steps.stop.is_set():
                    result.status = "failed"
                continue
            if steps.stop.is_set():
                return
            result.status = "done"
    finally:
        connections.close_all()


# --- the snapshot -------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _text(value: Any) -> str | None:
    return plain(value) if value is not None else None


def snapshot_data(*, reason: str, clean: bool, unfinished: list[str],
                  steps: list[dict[str, Any]], started_at: datetime | None,
                  created_at: datetime) -> dict[str, Any]:
    """The snapshot document: what is open, whether entries are halted, and when."""
    state = platform_state()
    positions = Position.objects.filter(state__in=PositionState.active()).select_related(
        "strategy__account").order_by("opened_at", "pk")
    orders = Order.objects.filter(status__in=OrderStatus.active()).select_related(
        "account", "strategy").order_by("created_at", "pk")
    return {
        "format": SNAPSHOT_FORMAT,
        "created_at": _iso(created_at),
        "shutdown_started_at": _iso(started_at),
        "reason": reason,
        "clean": clean,
        "unfinished": unfinished,
        "steps": steps,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "trading": {"halted": state.trading_halted, "halt_reason": state.halt_reason,
                    "halted_by": state.halted_by, "halted_at": _iso(state.halted_at)},
        "positions": [{
            "id": p.pk, "strategy": p.strategy.name, "account": p.strategy.account.name,
            "symbol": p.symbol, "side": p.side, "quantity": _text(p.quantity),
            "entry_price": _text(p.entry_price), "opened_at": _iso(p.opened_at),
            "state": p.state, "close_reason": p.close_reason,
        } for p in positions],
        "orders": [{
            "id": o.pk, "client_order_id": o.client_order_id,
            "exchange_order_id": o.exchange_order_id, "account": o.account.name,
            "strategy": o.strategy.name if o.strategy_id else None, "symbol": o.symbol,
            "side": o.side, "type": o.order_type, "purpose": o.purpose,
            "quantity": _text(o.quantity), "price": _text(o.price),
            "filled_quantity": _text(o.filled_quantity), "status": o.status,
            "position": o.position_id, "created_at": _iso(o.created_at),
        } for o in orders],
    }


def snapshot_write(*, reason: str, clean: bool = True, unfinished: list[str] | None = None,
                   steps: list[dict[str, Any]] | None = None,
                   started_at: datetime | None = None) -> StateSnapshot:
    """Write ``STATE_DIR/snapshot.json`` (atomically), then the ``StateSnapshot`` row.

    The file comes first: it is what the next start reads if the database write
    is what failed.
    """
    created_at = timezone.now()
    unfinished = unfinished or []
    data = snapshot_data(reason=reason, clean=clean, unfinished=unfinished, steps=steps or [],
                         started_at=started_at, created_at=created_at)
    write_json_atomic(snapshot_path(), data)
    return StateSnapshot.objects.create(created_at=created_at, reason=reason[:32], clean=clean,
                                        unfinished=unfinished, data=data)


def _write_snapshot_unkillable(**kwargs: Any) -> StateSnapshot:
    """``snapshot_write`` on a non-daemon thread: the interpreter waits for it at exit."""
    box: dict[str, Any] = {}

    def write() -> None:
        try:
            box["snapshot"] = snapshot_write(**kwargs)
        except BaseException as exc:
            box["error"] = exc
        finally:
            connections.close_all()

    writer = threading.Thread(target=write, name="state-snapshot", daemon=False)
    writer.start()
    writer.join()
    if "error" in box:
        raise box["error"]
    return box["snapshot"]


# --- the coordinator ------------------------------------------------------------------------

@dataclass(frozen=True)
class ShutdownOutcome:
    snapshot: StateSnapshot
    path: Path
    clean: bool
    unfinished: list[str]
    why: str  # empty when clean

    @property
    def exit_code(self) -> int:
        return 0 if self.clean else 1


class ShutdownIncomplete(RuntimeError):
    """The sequence did not finish; raised by the platform hook to make the exit code 1."""


def shutdown_run(*, timeout: float, reason: str, force: threading.Event | None = None,
                 out: Output = log.info, exchange_of: Callable[[Any], Any] | None = None,
                 time_left: float | None = None) -> ShutdownOutcome:
    """Run steps 1–3 within the time left (less the snapshot reserve), then step 4.

    ``timeout`` is the configured ``shutdownTimeoutSeconds``; ``time_left`` what is
    left of it when the sequence starts (the whole timeout by default).
    """
    started_at = timezone.now()
    budget = timeout if time_left is None else time_left
    reserve = min(SNAPSHOT_RESERVE_SECONDS, budget / 4)
    deadline = time.monotonic() + max(budget - reserve, 0.0)
    stop = threading.Event()
    steps = Steps(out, stop)
    runner = threading.Thread(target=_run_steps, args=(steps, exchange_of or exchange_for),
                              name="shutdown-steps", daemon=True)
    runner.start()
    why = ""
    while runner.is_alive():
        runner.join(POLL_SECONDS)
        if force is not None and force.is_set():
            why = "forced by a second signal"
        elif time.monotonic() >= deadline:
            why = f"past shutdownTimeoutSeconds={timeout:g}"
        if why and runner.is_alive():
            stop.set()
            for result in steps.results:
                if result.status in ("pending", "running"):
                    result.status = "abandoned"
            break
        why = ""
    unfinished = steps.unfinished()
    if unfinished and not why:
        why = "failed: " + ", ".join(unfinished)
    snapshot = _write_snapshot_unkillable(
        reason=reason, clean=not unfinished, unfinished=unfinished,
        steps=[result.as_dict() for result in steps.results], started_at=started_at)
    data = snapshot.data
    out(f"    snapshot: {snapshot_path()} (open positions: {len(data['positions'])}, "
        f"open orders: {len(data['orders'])}, trading "
        f"{'halted' if data['trading']['halted'] else 'not halted'})")
    if unfinished:
        out(f"    unfinished ({why}): {', '.join(unfinished)}")
    return ShutdownOutcome(snapshot, snapshot_path(), not unfinished, unfinished, why)


# --- runplatform: hooks, stop check, pid file ------------------------------------------------

def platform_shutdown(platform: Any) -> None:
    """PLATFORM_SHUTDOWN_HOOKS entry: the sequence within the platform's time left.

    Only an instance that runs the worker or beat halts trading when it stops; a
    web-only one stops serving and leaves trading to the processes that run it.
    """
    if not runs_trading(platform.options):
        pid_file_remove()
        platform.out("    web-only instance: trading left running (the halting shutdown runs "
                     "where the worker or beat runs, or with shutdown_platform --run-here)")
        return
    try:
        outcome = shutdown_run(timeout=platform.options.shutdown_timeout,
                               time_left=platform.seconds_left(),
                               reason=platform.stop_reason or "shutdown",
                               force=platform.force_requested, out=platform.out)
    finally:
        pid_file_remove()
    if not outcome.clean:
        raise ShutdownIncomplete(f"{outcome.why}; unfinished: {', '.join(outcome.unfinished)}")


def shutdown_requested(platform: Any) -> str:
    """PLATFORM_STOP_CHECKS entry: a request from ``shutdown_platform`` stops this instance.

    The flag is cleared when an instance starts (``recovery.platform_recover``), so
    only a request made while it runs stops it.
    """
    requested = PlatformState.objects.filter(id=PlatformState.SINGLETON_ID).values_list(
        "shutdown_requested_at", flat=True).first()
    if requested is None:
        return ""
    if platform.stop_requested.is_set():  # already stopping: a second request would force
        return ""
    return f"shutdown requested by shutdown_platform at {requested:%Y-%m-%d %H:%M:%S %Z}"


# --- the production worker ---------------------------------------------------------------------

def on_worker_shutting_down(sig: str = "", how: str = "", **kwargs: Any) -> None:
    """Celery ``worker_shutting_down``: say what a warm stop keeps and what it hands back.

    The worker itself stops taking messages; tasks it runs finish, and those it
    reserved but did not start were never acknowledged (late ack), so the broker
    hands them to the next worker. No exchange state is touched here: in
    production the sequence above runs from ``shutdown_platform --run-here``.
    """
    log.warning("worker %s shutdown on %s: running tasks finish, unstarted tasks go back to "
                "the broker (late acknowledgement)", how.lower() or "warm", sig or "signal")
