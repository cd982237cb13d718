"""Recovery on start: read the last snapshot, reconcile with the exchange, resume timeouts.

``recover`` runs automatically when ``runplatform`` starts (startup hook
``platform_recover``, before its worker), when a production Celery worker is ready
(``on_worker_ready``, one worker at a time), and on demand with ``manage.py reconcile
[--dry-run]`` or the admin. In order:

1. the last snapshot (database row or ``STATE_DIR/snapshot.json``, the newer one): when
   the platform stopped, whether cleanly, what was open;
2. every non-final order is looked up on its exchange by exchange id, else by client
   order id. Filled while the platform was down → the fills are applied through the
   pipeline (``order_sync``: keyed, never twice) and the positions move with them;
   still open → tracked again by the pipeline; not found → in doubt: the miss is
   counted (``order_not_found``) and the order tracked, and it ends (FAILED if never
   acknowledged, EXPIRED otherwise, with a risk alert) only once ``inDoubtLookups``
   lookups over ``inDoubtGraceSeconds`` missed. An order not found whose lease a worker
   holds (it may be sending it) is left to that worker, and every write is a compare-and-set
   on the order's version: a stale copy never overwrites a live worker. Orders declared
   absent in the last day are looked up too: one that shows up is taken back
   (``order_take_back``, alert ``order_reappeared``);
3. each account's open positions are compared with the exchange's (net quantity per
   symbol); differences are reported and alerted. A paper book that restarted with
   this process holds nothing to compare and is skipped;
4. the timeout pass runs at once (``lifecycle.services.timeout_pass_run``). Holding time
   counts from each position's original ``opened_at``, so a position that passed its
   limit while the platform was down is emergency-closed now;
5. on a start, a halt set by the shutdown (reason ``shutdown``) is lifted when every
   exchange answered and no position differs; an operator's halt always stays.

The report is printed line by line as it goes and kept as a ``ReconciliationReport``.
A dry run only reads: nothing is written but the report (marked dry run).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from execution.exchanges import exchange_for
from execution.exchanges.base import Exchange, OrderSnapshot
from execution.exchanges.errors import ExchangeError
from execution.exchanges.paper import PaperExchange
from execution.models import ExchangeAccount, Order, OrderPurpose, OrderStatus
from execution.pipeline import (
    ABSENT,
    OrderMoved,
    order_config,
    order_held,
    order_locate,
    order_not_found,
    order_sync,
    order_take_back,
    plain,
)
from execution.services import order_actions_settle
from lifecycle.models import Position, PositionFill, PositionSide, PositionState
from lifecycle.services import (
    position_apply_close_fill,
    position_begin_close,
    position_clear_attention,
    state_for_holding_time,
    timeout_pass_run,
)
from operations.runtime import runs_trading
from operations.shutdown import SHUTDOWN_ACTOR, SHUTDOWN_HALT_REASON
from operations.state_files import local_platform_pid, pid_file_write, pid_path, read_json, snapshot_path
from risk.models import AlertSeverity
from risk.services import alert_raise
from tradingsite.domain import CloseReason
from tradingsite.models import ReconciliationReport, StateSnapshot
from tradingsite.services import platform_state, shutdown_request_clear, trading_resume

log = logging.getLogger(__name__)

Output = Callable[[str], None]
Track = Callable[[Order], None]

RECOVERY_ACTOR = "recovery"
ORDER_UNKNOWN_ALERT = "order_unknown"
# Orders declared absent this recently are looked up again: one may show up late.
REAPPEAR_WINDOW = timedelta(days=1)
POSITION_MISMATCH_ALERT = "position_mismatch"
# pg_try_advisory_lock key: one recovery at a time when several workers start together.
ADVISORY_LOCK_KEY = 7_410_007


# --- the report ---------------------------------------------------------------------------

@dataclass
class OrderCheck:
    """One non-final order compared with its exchange."""

    order_id: int
    client_order_id: str
    account: str
    symbol: str
    purpose: str
    before: str
    after: str
    outcome: str  # filled | tracked | ended | unknown | in_doubt | reappeared | left | error
    detail: str

    @property
    def is_difference(self) -> bool:
        """The database did not know what the exchange knew (or the exchange has no trace)."""
        return self.outcome in ("filled", "ended", "unknown", "in_doubt", "reappeared") or (
            self.outcome == "tracked" and self.before != self.after)


@dataclass
class PositionCheck:
    """Net quantity of one symbol on one account: database against exchange (long > 0)."""

    account: str
    symbol: str
    database: Decimal
    exchange: Decimal

    @property
    def matches(self) -> bool:
        return self.database == self.exchange


@dataclass
class RecoveryReport:
    trigger: str
    dry_run: bool
    started_at: datetime
    notes: list[str] = field(default_factory=list)
    last_snapshot: dict[str, Any] | None = None
    orders: list[OrderCheck] = field(default_factory=list)
    positions: list[PositionCheck] = field(default_factory=list)
    accounts: list[dict[str, str]] = field(default_factory=list)
    timeouts: dict[str, Any] = field(default_factory=dict)
    halt: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def position_differences(self) -> list[PositionCheck]:
        return [check for check in self.positions if not check.matches]

    @property
    def differences(self) -> int:
        return (sum(1 for check in self.orders if check.is_difference)
                + len(self.position_differences))

    def summary(self) -> str:
        counts: dict[str, int] = defaultdict(int)
        for check in self.orders:
            counts[check.outcome] += 1
        labels = [("filled", "filled while down"), ("tracked", "still open, tracked again"),
                  ("ended", "ended on the exchange"), ("unknown", "unknown to the exchange"),
                  ("in_doubt", "in doubt, looked up again"),
                  ("reappeared", "reappeared and taken back"),
                  ("left", "left to the worker sending it"), ("error", "not checked")]
        order_part = ", ".join(f"{label}: {counts[key]}" for key, label in labels if counts[key])
        parts = [f"open orders checked: {len(self.orders)}" + (f" ({order_part})" if order_part
                                                               else "")]
        parts.append(f"position differences: {len(self.position_differences)}")
        if self.timeouts:
            parts.append(self.timeouts.get("summary", ""))
        if self.errors:
            parts.append(f"errors: {len(self.errors)}")
        if self.halt:
            parts.append(self.halt)
        prefix = "dry run: " if self.dry_run else ""
        return prefix + "; ".join(part for part in parts if part)

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger, "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(), "finished_at": timezone.now().isoformat(),
            "notes": self.notes, "last_snapshot": self.last_snapshot,
            "orders": [{**vars(check), "difference": check.is_difference}
                       for check in self.orders],
            "positions": [{"account": c.account, "symbol": c.symbol,
                           "database": plain(c.database), "exchange": plain(c.exchange),
                           "matches": c.matches} for c in self.positions],
            "accounts": self.accounts, "timeouts": self.timeouts, "halt": self.halt,
            "errors": self.errors,
        }


# --- 1. the last snapshot ---------------------------------------------------------------------

def last_snapshot() -> dict[str, Any] | None:
    """The newer of the latest ``StateSnapshot`` row and ``STATE_DIR/snapshot.json``."""
    row = StateSnapshot.objects.order_by("-created_at", "-pk").first()
    from_db = dict(row.data, source=f"database (snapshot #{row.pk})") if row else None
    from_file = read_json(snapshot_path())
    if from_file is not None:
        from_file = dict(from_file, source=str(snapshot_path()))
    candidates = [data for data in (from_db, from_file)
                  if data and parse_datetime(str(data.get("created_at") or ""))]
    if not candidates:
        return None
    return max(candidates, key=lambda data: parse_datetime(data["created_at"]))


def _describe_snapshot(data: dict[str, Any] | None, out: Output) -> dict[str, Any] | None:
    if data is None:
        out("last snapshot: none (first start, or the platform never stopped cleanly)")
        return None
    summary = {"source": data.get("source"), "created_at": data.get("created_at"),
               "reason": data.get("reason"), "clean": data.get("clean"),
               "unfinished": data.get("unfinished") or [],
               "open_orders": len(data.get("orders") or []),
               "open_positions": len(data.get("positions") or []),
               "trading_halted": (data.get("trading") or {}).get("halted")}
    how = "cleanly" if summary["clean"] else (
        "NOT cleanly, unfinished: " + ", ".join(summary["unfinished"]))
    out(f"last snapshot: {summary['created_at']} from {summary['source']}: stopped {how}; "
        f"open orders: {summary['open_orders']}, open positions: {summary['open_positions']}")
    return summary


def _snapshot_orders_missing(data: dict[str, Any] | None) -> list[str]:
    """Client order ids the snapshot lists that the database does not hold."""
    listed = {order.get("client_order_id") for order in (data or {}).get("orders") or []}
    listed.discard(None)
    known = set(Order.objects.filter(client_order_id__in=listed).values_list(
        "client_order_id", flat=True))
    return sorted(listed - known)


# --- 2. orders ----------------------------------------------------------------------------------

def _label(order: Order) -> str:
    return (f"{order.client_order_id} ({order.purpose} {order.side} {plain(order.quantity)} "
            f"{order.symbol})")


def reconcile_order(order: Order, exchange: Exchange, *, dry_run: bool, exclusive: bool,
                    track: Track, now: datetime) -> OrderCheck:
    """Compare one order with the exchange and, unless ``dry_run``, apply what it says.

    ``order`` may be stale by the time it is written: every write is a compare-and-set,
    and an order another worker moved meanwhile is reported as left to it.
    """
    before, before_filled = order.status, order.filled_quantity

    def check(outcome: str, detail: str) -> OrderCheck:
        return OrderCheck(order.pk, order.client_order_id, order.account.name, order.symbol,
                          order.purpose, before, order.status, outcome, detail)

    snapshot = order_locate(order, exchange)
    try:
        if snapshot is None and not exclusive and order_held(order, now):
            if not dry_run:
                track(order)
            return check("left", f"not found; held by {order.lease_holder or 'a worker'} until "
                                 f"{order.lease_until:%H:%M:%S}: it may be sending it; left to it")
        if snapshot is None:
            return _not_found(order, check, dry_run=dry_run, exclusive=exclusive, track=track,
                              now=now)
        if dry_run:
            ended = snapshot.is_final
            filled = snapshot.filled > before_filled
            outcome = "filled" if filled and ended else "ended" if ended else "tracked"
            return check(outcome, f"{_seen(order, snapshot)}: would be applied"
                         if (filled or ended) else _seen(order, snapshot))
        order = order_sync(order, snapshot).order
    except OrderMoved:
        return check("left", "moved by another worker meanwhile: left to it")
    if order.is_final:
        order_actions_settle(order)
    else:
        track(order)
        fills = (f", {plain(order.filled_quantity - before_filled)} filled while down"
                 if order.filled_quantity > before_filled else "")
        return check("tracked", f"{_seen(order, snapshot)}: still open, tracked again{fills}")
    if order.filled_quantity > before_filled:
        price = plain(order.average_fill_price) if order.average_fill_price else "?"
        effect = ""
        if order.purpose == OrderPurpose.ENTRY and order.position_id:
            effect = f", position #{order.position_id} opened"
        elif order.position_id:
            effect = f", position #{order.position_id} reduced"
        return check("filled", f"{_seen(order, snapshot)}: "
                               f"{plain(order.filled_quantity - before_filled)} filled while "
                               f"down at {price}{effect}")
    return check("ended", f"{_seen(order, snapshot)}: {order.status} on the exchange")


def _seen(order: Order, snapshot: OrderSnapshot) -> str:
    return (f"exchange: {snapshot.status or 'no status'}, filled {plain(snapshot.filled)} of "
            f"{plain(order.quantity)}")


def _not_found(order: Order, check: Callable[[str, str], OrderCheck], *, dry_run: bool,
               exclusive: bool, track: Track, now: datetime) -> OrderCheck:
    """The exchange does not list ``order``: never sent, or in doubt until proven absent."""
    never_sent = order.attempts == 0 and not order.exchange_order_id
    if never_sent and not exclusive:
        if not dry_run:
            track(order)
        return check("left", "not sent yet: left to the pipeline")
    cfg = order_config(order)
    if dry_run:
        if never_sent:
            return check("unknown", "never sent: would be marked failed")
        return check("in_doubt", f"not found: lookup {order.doubt_lookups + 1} of "
                                 f"{cfg.in_doubt_lookups} before it counts as absent")
    note = "reconciliation: the platform stopped before sending it" if never_sent else ""
    order_not_found(order, now=now, note=note)
    if order.is_final:
        order_actions_settle(order)
        return check("unknown", f"{order.last_error}: marked {order.status}")
    track(order)
    return check("in_doubt", f"not found by client order id (lookup {order.doubt_lookups} of "
                             f"{cfg.in_doubt_lookups}, in doubt since "
                             f"{order.in_doubt_since:%H:%M:%S}): looked up again")


def reconcile_absent_order(order: Order, exchange: Exchange, *, dry_run: bool, track: Track
                           ) -> OrderCheck | None:
    """An order declared absent: if the exchange lists it after all, take it back."""
    snapshot = order_locate(order, exchange)
    if snapshot is None:
        return None
    before = order.status

    def check(outcome: str, detail: str) -> OrderCheck:
        return OrderCheck(order.pk, order.client_order_id, order.account.name, order.symbol,
                          order.purpose, before, order.status, outcome, detail)

    if dry_run:
        return check("reappeared", f"{_seen(order, snapshot)}: would be taken back")
    try:
        order_take_back(order, snapshot)
    except OrderMoved:
        return check("left", "moved by another worker meanwhile: left to it")
    if not order.is_final:
        track(order)
    return check("reappeared", f"{_seen(order, snapshot)}: taken back, now {order.status}")


def _not_checked(order: Order, detail: str) -> OrderCheck:
    return OrderCheck(order.pk, order.client_order_id, order.account.name, order.symbol,
                      order.purpose, order.status, order.status, "error", detail)


def _reconcile_orders(report: RecoveryReport, *, exchanges: dict[int, Exchange | None],
                      dry_run: bool, exclusive: bool, track: Track, now: datetime,
                      out: Output) -> None:
    orders = list(Order.objects.filter(
        Q(status__in=OrderStatus.active())
        | Q(status__in=OrderStatus.final(), error_code=ABSENT,
            finalized_at__gte=now - REAPPEAR_WINDOW)).select_related(
        "account", "strategy", "position", "action").order_by("created_at", "pk"))
    active = sum(1 for order in orders if not order.is_final)
    absent = (f", {len(orders) - active} declared absent in the last day looked up again"
              if len(orders) > active else "")
    out(f"orders: {active} not final in the database{absent}")
    for order in orders:
        exchange = exchanges.get(order.account_id)
        result: OrderCheck | None
        if exchange is None:
            result = _not_checked(order, "exchange not reachable: not checked")
        else:
            try:
                result = (reconcile_absent_order(order, exchange, dry_run=dry_run, track=track)
                          if order.is_final else
                          reconcile_order(order, exchange, dry_run=dry_run, exclusive=exclusive,
                                          track=track, now=now))
            except ExchangeError as exc:
                report.errors.append(f"order {order.client_order_id}: {exc}")
                result = _not_checked(order, f"lookup failed: {exc}")
        if result is None:
            continue
        report.orders.append(result)
        out(f"  {_label(order)}: {result.before} → {result.after}: {result.detail}")


# --- 3. positions ------------------------------------------------------------------------------

def fresh_paper_book(exchange: Exchange) -> bool:
    """A paper exchange that has seen no order in this process restarted empty."""
    return isinstance(exchange, PaperExchange) and not exchange.orders


def _net_by_symbol(rows: Iterator[tuple[str, str, Decimal]]) -> dict[str, Decimal]:
    net: dict[str, Decimal] = defaultdict(Decimal)
    for symbol, side, quantity in rows:
        net[symbol] += quantity if side == PositionSide.LONG else -quantity
    return net


def _held_on_exchange(account: ExchangeAccount, exchange: Exchange, symbols: set[str]
                      ) -> dict[str, Decimal]:
    """Net quantity per symbol on the exchange.

    Derivatives: the exchange's position list. Spot: what a spot position is, the
    balance of its base currency (only for the symbols the database holds: other
    coins in the wallet are not positions the platform opened).
    """
    if account.market_type == "spot" and not account.is_paper:
        balance = exchange.fetch_balance()
        return {symbol: balance[base].total for symbol in symbols
                if (base := symbol.split("/")[0]) in balance and balance[base].total}
    return _net_by_symbol((p.symbol, p.side, p.quantity) for p in exchange.fetch_positions())


def compare_positions(account: ExchangeAccount, exchange: Exchange) -> list[PositionCheck]:
    """Net quantity per symbol, database against exchange, for every symbol either holds."""
    held = Position.objects.filter(strategy__account=account,
                                   state__in=PositionState.active()).values_list(
        "symbol", "side", "quantity")
    database = _net_by_symbol(iter(held))
    on_exchange = _held_on_exchange(account, exchange, set(database))
    return [PositionCheck(account.name, symbol, database.get(symbol, Decimal("0")),
                          on_exchange.get(symbol, Decimal("0")))
            for symbol in sorted(set(database) | set(on_exchange))]


def _compare_accounts(report: RecoveryReport, *, exchanges: dict[int, Exchange | None],
                      out: Output) -> None:
    for account in ExchangeAccount.objects.filter(pk__in=exchanges).order_by("name"):
        exchange = exchanges[account.pk]
        if exchange is None:
            continue
        if fresh_paper_book(exchange):
            report.accounts.append({"account": account.name, "positions": "skipped",
                                    "detail": "paper book restarted with this process"})
            out(f"positions of {account.name}: not compared (the paper book restarted empty "
                "with this process)")
            continue
        try:
            checks = compare_positions(account, exchange)
        except ExchangeError as exc:
            report.errors.append(f"positions of {account.name}: {exc}")
            report.accounts.append({"account": account.name, "positions": "error",
                                    "detail": str(exc)})
            out(f"positions of {account.name}: not compared: {exc}")
            continue
        report.positions.extend(checks)
        differ = [c for c in checks if not c.matches]
        report.accounts.append({"account": account.name, "positions": "compared",
                                "detail": f"symbols matching: {len(checks) - len(differ)}, "
                                          f"differing: {len(differ)}"})
        out(f"positions of {account.name}: symbols matching: {len(checks) - len(differ)}, "
            f"differing: {len(differ)}")
        for check in differ:
            out(f"  {check.symbol}: database {plain(check.database)}, exchange "
                f"{plain(check.exchange)} (net, long > 0)")


def _exchanges(*, out: Output, report: RecoveryReport,
               exchange_of: Callable[[Any], Exchange]) -> dict[int, Exchange | None]:
    """The exchange of every enabled account that holds positions or active orders."""
    wanted = set(Position.objects.filter(state__in=PositionState.active()).values_list(
        "strategy__account_id", flat=True))
    wanted |= set(Order.objects.filter(
        Q(status__in=OrderStatus.active())
        | Q(status__in=OrderStatus.final(), error_code=ABSENT,
            finalized_at__gte=timezone.now() - REAPPEAR_WINDOW)).values_list(
        "account_id", flat=True))
    exchanges: dict[int, Exchange | None] = {}
    for account in ExchangeAccount.objects.filter(pk__in=wanted).order_by("name"):
        try:
            exchanges[account.pk] = exchange_of(account)
        except ExchangeError as exc:
            exchanges[account.pk] = None
            report.errors.append(f"account {account.name}: {exc}")
            report.accounts.append({"account": account.name, "positions": "error",
                                    "detail": str(exc)})
            out(f"account {account.name}: exchange not reachable: {exc}")
    return exchanges


# --- a position marked for attention -----------------------------------------------------------

@dataclass(frozen=True)
class UnappliedFill:
    """The part of an exit order's fill that its position never took."""

    order: Order
    quantity: Decimal
    price: Decimal
    fee: Decimal


def unapplied_exit_fills(position: Position) -> list[UnappliedFill]:
    """What the exit orders of ``position`` filled beyond the fills the position recorded."""
    applied = list(PositionFill.objects.filter(position=position, kind=PositionFill.Kind.EXIT)
                   .values_list("fill_key", "quantity", "price", "fee"))
    missing = []
    for order in Order.objects.filter(position=position, filled_quantity__gt=0).exclude(
            purpose=OrderPurpose.ENTRY).order_by("created_at", "pk"):
        mine = [row for row in applied if row[0].startswith(f"{order.client_order_id}:")]
        quantity = order.filled_quantity - sum((q for _, q, _, _ in mine), Decimal("0"))
        if quantity <= 0:
            continue
        value = order.filled_quantity * (order.average_fill_price or Decimal("0")) - sum(
            (q * p for _, q, p, _ in mine), Decimal("0"))
        fee = max(order.fee - sum((f for _, _, _, f in mine), Decimal("0")), Decimal("0"))
        missing.append(UnappliedFill(order, quantity, (value / quantity).quantize(
            Decimal("1e-10")), fee))
    return missing


def _close_reason(order: Order) -> str:
    if order.action_id and order.action.reason:
        return order.action.reason
    return CloseReason.SIGNAL if order.purpose == OrderPurpose.CLOSE else CloseReason.MANUAL


def position_reconcile(position_id: int, *,
                       exchange_of: Callable[[Any], Exchange] = exchange_for) -> str:
    """Reconcile a position marked for attention with its exchange; what was done.

    The exchange's net quantity for the symbol decides. When it equals the database's
    minus the exit fills the position never took, those fills are applied now (the
    position moves to CLOSING and the fills close or reduce it, dated when they
    happened) and the mark is cleared. When the database already agrees, the mark is
    cleared. Otherwise the mark stays and a ``position_mismatch`` alert says why: an
    operator decides.
    """
    position = Position.objects.select_related("strategy__account").filter(
        pk=position_id).first()
    if position is None or not position.attention:
        return "nothing to reconcile"
    account = position.strategy.account
    [check] = [c for c in compare_positions(account, exchange_of(account))
               if c.symbol == position.symbol] or [PositionCheck(account.name, position.symbol,
                                                                 Decimal("0"), Decimal("0"))]
    missing = unapplied_exit_fills(position)
    sign = 1 if position.side == PositionSide.LONG else -1
    unapplied = sum((fill.quantity for fill in missing), Decimal("0")) * sign
    if missing and check.exchange == check.database - unapplied:
        with transaction.atomic():
            for fill in missing:
                position.refresh_from_db()
                if position.state in PositionState.holding():
                    position_begin_close(position, reason=_close_reason(fill.order),
                                         actor=RECOVERY_ACTOR)
                position_apply_close_fill(
                    position, fill_key=f"{fill.order.client_order_id}:"
                                       f"{fill.order.filled_quantity.normalize()}",
                    quantity=fill.quantity, price=fill.price, fee=fill.fee,
                    filled_at=fill.order.filled_at or timezone.now(), actor=RECOVERY_ACTOR)
            position_clear_attention(position, reason="exit fills applied after reconciling "
                                                      "with the exchange", actor=RECOVERY_ACTOR)
        return f"applied {plain(abs(unapplied))} of exit fills: position {position.state}"
    if check.matches:
        position_clear_attention(position, reason="the exchange agrees with the database",
                                 actor=RECOVERY_ACTOR)
        return "the exchange agrees: mark cleared"
    alert_raise(position=position, kind=POSITION_MISMATCH_ALERT, severity=AlertSeverity.CRITICAL,
                message=f"Position #{position.pk} {position.symbol}: database "
                        f"{plain(check.database)}, exchange {plain(check.exchange)}, exit "
                        f"fills not applied {plain(unapplied)}: check before closing it")
    return "differs from the exchange: alerted"


# --- 4. timeouts --------------------------------------------------------------------------------

def _resume_timeouts(*, dry_run: bool, now: datetime, out: Output) -> dict[str, Any]:
    if dry_run:
        due = [p for p in Position.objects.filter(state__in=PositionState.holding())
               .select_related("strategy").order_by("opened_at", "pk")
               if state_for_holding_time(p, now) != p.state]
        out(f"timeouts: positions past a holding-time limit: {len(due)} (not moved: dry run)")
        return {"due": [p.pk for p in due],
                "summary": f"positions past a holding-time limit: {len(due)}"}
    result = timeout_pass_run(now)
    summary = (f"timeouts resumed: {result.warned} warned, {result.timed_out} timed out, "
               f"{result.close_actions} emergency closes queued")
    out(summary)
    return {**result.as_dict(), "summary": summary}


# --- alerts and the halt -----------------------------------------------------------------------

def _raise_alerts(report: RecoveryReport) -> None:
    """One alert per position (or one for orders without a position) and one for mismatches."""
    unknown: dict[int | None, list[OrderCheck]] = defaultdict(list)
    positions = dict(Order.objects.filter(
        pk__in=[c.order_id for c in report.orders if c.outcome == "unknown"]).values_list(
        "pk", "position_id"))
    for check in report.orders:
        if check.outcome == "unknown":
            unknown[positions.get(check.order_id)].append(check)
    for position_id, checks in unknown.items():
        exits = any(check.purpose != OrderPurpose.ENTRY for check in checks)
        alert_raise(
            position=Position.objects.filter(pk=position_id).first() if position_id else None,
            kind=ORDER_UNKNOWN_ALERT,
            severity=AlertSeverity.CRITICAL if exits else AlertSeverity.WARNING,
            message="Reconciliation: unknown to the exchange, marked "
                    + "; ".join(f"{c.client_order_id} ({c.purpose} {c.symbol}, {c.after})"
                                for c in checks))
    if report.position_differences:
        alert_raise(position=None, kind=POSITION_MISMATCH_ALERT, severity=AlertSeverity.CRITICAL,
                    message="Reconciliation: positions differ from the exchange: " + "; ".join(
                        f"{c.account} {c.symbol} database {plain(c.database)} exchange "
                        f"{plain(c.exchange)}" for c in report.position_differences))


def lift_shutdown_halt(report: RecoveryReport) -> str:
    """Lift the halt the shutdown set, if reconciliation found the exchange in line."""
    state = platform_state()
    if not state.trading_halted:
        return "trading not halted"
    if (state.halt_reason, state.halted_by) != (SHUTDOWN_HALT_REASON, SHUTDOWN_ACTOR):
        return (f"halt kept: set by {state.halted_by or 'unknown'} "
                f"({state.halt_reason or 'no reason'}); lift it with resume_trading")
    blockers = [f"errors: {len(report.errors)}"] if report.errors else []
    if report.position_differences:
        blockers.append(f"position differences: {len(report.position_differences)}")
    if blockers:
        return (f"shutdown halt kept ({', '.join(blockers)}): check, then run "
                "resume_trading")
    trading_resume(actor=RECOVERY_ACTOR)
    return "shutdown halt lifted"


# --- the whole recovery -------------------------------------------------------------------------

def _schedule_tracking(order: Order) -> None:
    """Hand an order back to the pipeline's driver (a Celery task on its account's queue)."""
    from execution.pipeline import Next
    from execution.tasks import schedule_next

    schedule_next(Next(order, 0.0, "tracked again after reconciliation"))


def recover(*, trigger: str, dry_run: bool = False, on_start: bool = False,
            exclusive: bool = False, out: Output = log.info, notes: list[str] | None = None,
            exchange_of: Callable[[Any], Exchange] = exchange_for,
            track: Track = _schedule_tracking) -> ReconciliationReport:
    """Reconcile the database with the exchanges and resume; the stored report.

    ``exclusive``: no other worker can be sending orders (the embedded platform before
    its worker starts), so an order the exchange does not know was never sent.
    ``on_start``: lift the shutdown's halt when everything is in line.
    """
    now = timezone.now()
    report = RecoveryReport(trigger=trigger, dry_run=dry_run, started_at=now,
                            notes=list(notes or []))
    out(f"reconciliation ({trigger}{', dry run' if dry_run else ''})")
    for note in report.notes:
        out(note)
    snapshot = last_snapshot()
    report.last_snapshot = _describe_snapshot(snapshot, out)
    for client_order_id in _snapshot_orders_missing(snapshot):
        report.errors.append(f"the snapshot lists order {client_order_id}, the database "
                             "does not hold it")
        out(f"  the snapshot lists order {client_order_id}: not in the database")
    exchanges = _exchanges(out=out, report=report, exchange_of=exchange_of)
    _reconcile_orders(report, exchanges=exchanges, dry_run=dry_run, exclusive=exclusive,
                      track=track, now=now, out=out)
    _compare_accounts(report, exchanges=exchanges, out=out)
    report.timeouts = _resume_timeouts(dry_run=dry_run, now=timezone.now(), out=out)
    if not dry_run:
        _raise_alerts(report)
        if on_start:
            report.halt = lift_shutdown_halt(report)
            out(report.halt)
    summary = report.summary()
    stored = ReconciliationReport.objects.create(
        created_at=now, dry_run=dry_run, differences=report.differences,
        summary=summary[:2000], data=report.as_dict())
    out(f"reconciliation report #{stored.pk}: {summary}")
    return stored


@contextmanager
def recovery_lock() -> Iterator[bool]:
    """One recovery at a time across processes (PostgreSQL advisory lock); True if ours."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


# --- entry points: runplatform and the production worker ------------------------------------------

def previous_run_note() -> str:
    """What the pid file left by the previous ``runplatform`` says about how it ended."""
    data = read_json(pid_path())
    if not data:
        return ""
    if local_platform_pid() is not None:
        return (f"another runplatform is running (pid {data.get('pid')}, "
                f"started {data.get('started_at')})")
    return (f"the previous run (pid {data.get('pid')} on {data.get('host')}, started "
            f"{data.get('started_at')}) ended without a clean stop: crashed or killed")


def platform_recover(platform: Any) -> None:
    """PLATFORM_STARTUP_HOOKS entry: clear a stale shutdown request, record our pid, recover.

    A web-only instance does not recover: it must not lift the halt a stopping worker
    instance set, nor reconcile orders that processes elsewhere are driving.

    Runs before the platform's worker starts: with the in-memory broker nothing else
    can be sending orders, so the reconciliation is exclusive.
    """
    shutdown_request_clear()
    note = previous_run_note()
    pid_file_write(timezone.now())
    if not runs_trading(platform.options):
        platform.out("    web-only instance: no reconciliation, trading state left as it is "
                     "(recovery runs where the worker or beat runs)")
        return
    exclusive = bool(platform.options.run_worker) and not settings.REDIS_URL
    recover(trigger="runplatform start", on_start=True, exclusive=exclusive,
            notes=[note] if note else [], out=lambda line: platform.out(f"    {line}"))


def on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    """Celery ``worker_ready`` (production workers): recover before taking tasks.

    Several workers starting together take turns on an advisory lock; the others
    skip. A failure is logged and the worker runs on (the beat sweeps still work).
    """
    hostname = getattr(sender, "hostname", "") or "worker"
    try:
        with recovery_lock() as ours:
            if not ours:
                log.info("recovery: another worker is reconciling; skipped on %s", hostname)
                return
            recover(trigger=f"worker start ({hostname})", on_start=True, exclusive=False)
    except Exception:
        log.exception("recovery on worker start failed; the worker runs on")
