"""The guard's writes: trading states, trips and re-arms, the evaluation, refusals.

- ``scope_state_set`` is the one writer of a scope's state (operators, with a reason;
  ``trading_halt``/``trading_resume`` come here for the platform). Setting a tripped
  scope ACTIVE or REDUCING re-arms it; nothing else does.
- ``guard_evaluate`` (beat, every 5 s) counts every scope's ledger exactly, computes
  live equity, moves the day's starting equity and the peak, and trips a platform or
  account scope whose daily loss or drawdown reached its limit.
- Every change is written to the audit log in the transaction that makes it.

The platform's state is mirrored into ``tradingsite.PlatformState`` (``trading_halted``
is "new entries refused": REDUCING or HALTED) in the same transaction, so the halt's
readers — the pipeline's in-statement check, shutdown, recovery, the halt API and
banner — see the global scope.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from execution.gates import OrderRefused
from execution.models import ActionKind, ExchangeAccount, Order, OrderPurpose, OrderStatus
from execution.services import order_request_cancel
from guard.equity import Book, ScopeFigures, plain, scope_filter
from guard.limits import ScopeLimits, account_portfolio_validate, scope_limits
from guard.models import (
    GuardTrip,
    OrderRefusal,
    ScopeKind,
    ScopeLedger,
    TradingScope,
    TradingState,
    TripCode,
)
from lifecycle.models import Position, PositionState, Strategy
from lifecycle.services import position_request_close
from risk.models import AlertSeverity, RiskAlert
from risk.services import alert_raise, alerts_resolve
from tradingsite.audit import audit_record, changed_fields
from tradingsite.domain import CloseReason
from tradingsite.errors import ConflictError, DomainError, InvalidStateTransition
from tradingsite.live import broadcast
from tradingsite.models import PlatformState
from tradingsite.services import halt_payload, platform_state
from tradingsite.sql import update_rows

log = logging.getLogger(__name__)

GUARD_ACTOR = "guard"
TRIPPED_ALERT = "guard_tripped"
PERCENT = Decimal("0.0001")
STATE_FIELDS = ("state", "state_reason", "state_by", "state_since", "trip_code")
EQUITY_FIELDS = ("equity", "equity_at", "marks_as_of", "unmarked_positions", "day",
                 "day_start_equity", "peak_equity", "peak_at")


class ScopeNotFound(DomainError):
    http_status = 404
    code = "scope_not_found"


# --- scope rows -------------------------------------------------------------------------

def _global_row() -> TradingScope:
    """The platform's scope as the halt left it (an upgrade keeps an operator's halt)."""
    halt = platform_state()
    if halt.trading_halted:
        return TradingScope(kind=ScopeKind.GLOBAL, level=0, state=TradingState.HALTED,
                            state_reason=halt.halt_reason, state_by=halt.halted_by,
                            state_since=halt.halted_at or timezone.now())
    return TradingScope(kind=ScopeKind.GLOBAL, level=0)


def scope_rows_ensure(*, account: ExchangeAccount | None = None,
                      strategy: Strategy | None = None, every: bool = False) -> None:
    """Create the missing scope rows (with their ledgers): the platform's, ``account``'s and
    ``strategy``'s, or (``every``) those of every account and strategy."""
    rows = []
    if not TradingScope.objects.filter(kind=ScopeKind.GLOBAL).exists():
        rows.append(_global_row())
    accounts = (ExchangeAccount.objects.exclude(pk__in=TradingScope.objects.filter(
        kind=ScopeKind.ACCOUNT).values("account_id")).values_list("pk", flat=True)
        if every else [account.pk] if account is not None else [])
    strategies = (Strategy.objects.exclude(pk__in=TradingScope.objects.filter(
        kind=ScopeKind.STRATEGY).values("strategy_id")).values_list("pk", flat=True)
        if every else [strategy.pk] if strategy is not None else [])
    rows += [TradingScope(kind=ScopeKind.ACCOUNT, level=1, account_id=pk) for pk in accounts]
    rows += [TradingScope(kind=ScopeKind.STRATEGY, level=2, strategy_id=pk) for pk in strategies]
    if rows:
        TradingScope.objects.bulk_create(rows, ignore_conflicts=True)
    missing = TradingScope.objects.filter(ledger__isnull=True).values_list("pk", flat=True)
    ScopeLedger.objects.bulk_create([ScopeLedger(scope_id=pk) for pk in missing],
                                    ignore_conflicts=True)


def scope_get(label: str) -> TradingScope:
    """The scope named ``global``, ``account:NAME`` or ``strategy:NAME`` (rows made if missing)."""
    kind, _, name = label.strip().partition(":")
    if kind == ScopeKind.GLOBAL and not name:
        scope_rows_ensure()
        return TradingScope.objects.get(kind=ScopeKind.GLOBAL)
    if kind == ScopeKind.ACCOUNT and name:
        account = ExchangeAccount.objects.filter(name=name).first()
        if account is None:
            raise ScopeNotFound(f"no account named {name!r}")
        scope_rows_ensure(account=account)
        return TradingScope.objects.select_related("account").get(kind=kind, account=account)
    if kind == ScopeKind.STRATEGY and name:
        strategy = Strategy.objects.filter(name=name).first()
        if strategy is None:
            raise ScopeNotFound(f"no strategy named {name!r}")
        scope_rows_ensure(strategy=strategy)
        return TradingScope.objects.select_related("strategy").get(kind=kind, strategy=strategy)
    raise DomainError(f"scope must be global, account:NAME or strategy:NAME, got {label[:100]!r}")


def _locked(scope: TradingScope) -> TradingScope:
    return TradingScope.objects.select_for_update(of=("self",)).select_related(
        "account", "strategy").get(pk=scope.pk)


def _state_of(scope: TradingScope) -> dict[str, Any]:
    return {name: getattr(scope, name) for name in STATE_FIELDS}


def _stricter(a: str, b: str) -> str:
    return a if TradingState.strictness(a) >= TradingState.strictness(b) else b


def _mirror_platform_state(scope: TradingScope) -> PlatformState:
    """The platform's state as the halt flag: new entries are refused unless ACTIVE."""
    active = scope.state == TradingState.ACTIVE
    reason = scope.state_reason if scope.state != TradingState.REDUCING else (
        f"reducing only: {scope.state_reason}")
    state = platform_state()
    PlatformState.objects.filter(pk=state.pk).update(
        trading_halted=not active, halt_reason="" if active else reason[:255],
        halted_at=None if active else scope.state_since, halted_by=scope.state_by[:150],
        updated_at=timezone.now())
    state.refresh_from_db()
    broadcast("trading.resumed" if active else "trading.halted", halt_payload(state))
    return state


def _announce(scope: TradingScope) -> None:
    broadcast("guard.state_changed", {"scope": scope.label, "state": scope.state,
                                      "reason": scope.state_reason, "by": scope.state_by,
                                      "since": scope.state_since, "trip": scope.trip_code})


# --- the one writer of states -------------------------------------------------------------

@transaction.atomic
def scope_state_set(*, scope: TradingScope, state: str, reason: str, actor: str
                    ) -> TradingScope:
    """Set ``scope``'s state, with the operator's reason; audited.

    On a tripped scope, ACTIVE or REDUCING re-arms it: the trip closes and its
    baselines restart from the equity now (the day's starting equity and the peak), so
    the loss the operator accepted does not trip it again at once. HALTED keeps the trip.
    """
    if state not in TradingState.values:
        raise DomainError(f"state must be one of {', '.join(TradingState.values)}, got "
                          f"{state!r}")
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("a reason is required: it is shown to every operator")
    locked = _locked(scope)
    before, now = _state_of(locked), timezone.now()
    baselines_before = {"day_start_equity": locked.day_start_equity,
                        "peak_equity": locked.peak_equity}
    trip = (GuardTrip.objects.select_for_update().filter(scope=locked, rearmed_at__isnull=True)
            .first() if locked.trip_code else None)
    rearm = trip is not None and state != TradingState.HALTED
    locked.state, locked.state_reason, locked.state_by = state, reason[:255], actor[:150]
    locked.state_since = now
    if rearm:
        trip.rearmed_at, trip.rearmed_by, trip.rearm_reason = now, actor[:150], reason[:255]
        trip.save(update_fields=["rearmed_at", "rearmed_by", "rearm_reason"])
        locked.trip_code = ""
        if locked.equity is not None:
            locked.day_start_equity = locked.peak_equity = locked.equity
            locked.peak_at = now
    locked.save(update_fields=[*STATE_FIELDS, "day_start_equity", "peak_equity", "peak_at",
                               "updated_at"])
    old, new = changed_fields(before, _state_of(locked), STATE_FIELDS)
    if rearm:
        old.update(baselines_before)
        new.update(day_start_equity=locked.day_start_equity, peak_equity=locked.peak_equity,
                   trip=trip.pk)
    audit_record(actor=actor, action="trading_state.rearm" if rearm else "trading_state.set",
                 target=locked, before=old, after=new, reason=reason)
    if locked.kind == ScopeKind.GLOBAL:
        _mirror_platform_state(locked)
    if rearm and not GuardTrip.objects.filter(rearmed_at__isnull=True).exists():
        alerts_resolve(list(RiskAlert.objects.filter(kind=TRIPPED_ALERT, position__isnull=True,
                                                     resolved_at__isnull=True)))
    _announce(locked)
    return locked


def global_state_set(*, state: str, reason: str, actor: str) -> PlatformState:
    """The platform's halt (``halt_trading``, ``resume_trading``, the halt API, shutdown).

    Resuming does not re-arm a trip: that takes ``trading_state --set ACTIVE --reason``.
    """
    scope = scope_get(ScopeKind.GLOBAL)
    if state == TradingState.ACTIVE:
        if scope.trip_code:
            raise ConflictError(
                f"the platform is tripped ({scope.trip_code}: {scope.state_reason}); an "
                "operator re-arms it with a reason: trading_state --scope global --set ACTIVE "
                "--reason …, or POST /api/guard/state")
        reason = reason or "trading resumed"
    with transaction.atomic():
        scope_state_set(scope=scope, state=state, reason=reason, actor=actor)
        return platform_state()


@transaction.atomic
def scope_portfolio_set(*, scope: TradingScope, overrides: Any, actor: str, reason: str = ""
                        ) -> TradingScope:
    """An account's own ``liveTrading.portfolio`` limits, validated by the one validator."""
    if scope.kind != ScopeKind.ACCOUNT:
        raise DomainError("portfolio overrides are set on an account scope; a strategy's go in "
                          "its live_trading overrides, the platform's in the site config")
    if not isinstance(overrides, dict):
        raise DomainError("portfolio overrides must be a JSON object")
    locked = _locked(scope)
    account_portfolio_validate(overrides, source=f"account {locked.name}")
    before = locked.portfolio
    locked.portfolio = overrides
    locked.save(update_fields=["portfolio", "updated_at"])
    ScopeLedger.objects.filter(scope=locked).update(tracked=False)  # count again under the new limits
    audit_record(actor=actor, action="trading_scope.limits", target=locked,
                 before={"portfolio": before}, after={"portfolio": overrides}, reason=reason)
    return locked


# --- refusals -----------------------------------------------------------------------------

def refusal_store(refused: OrderRefused) -> None:
    """Keep a refused order with its reason code and numbers; audited."""
    order = refused.order
    if order is None:
        return
    actor = refused.requested_by or (order.action.requested_by if order.action_id else "") \
        or "execution"
    refusal = OrderRefusal.objects.create(
        reason_code=refused.reason_code, scope=refused.scope, message=str(refused),
        numbers=refused.numbers, account_id=order.account_id, strategy_id=order.strategy_id,
        position_id=order.position_id, symbol=order.symbol, side=order.side,
        purpose=order.purpose, quantity=order.quantity,
        price=order.price or order.expected_price, requested_by=actor[:150])
    audit_record(actor=actor, action="order.refused", target=refusal,
                 after={"reason_code": refused.reason_code, "scope": refused.scope,
                        "symbol": order.symbol, "side": order.side,
                        "quantity": order.quantity, "numbers": refused.numbers},
                 reason=str(refused))
    broadcast("guard.order_refused", {"id": refusal.pk, "reason_code": refusal.reason_code,
                                      "scope": refusal.scope, "symbol": refusal.symbol,
                                      "message": refusal.message})


# --- the evaluation ----------------------------------------------------------------------------

@dataclass
class EvaluationResult:
    scopes: int = 0
    trips: list[str] = field(default_factory=list)
    closes_requested: int = 0
    entries_cancelled: int = 0
    equity: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"scopes": self.scopes, "trips": self.trips,
                "closes_requested": self.closes_requested,
                "entries_cancelled": self.entries_cancelled,
                "equity": None if self.equity is None else str(self.equity)}


def _target(scope: TradingScope) -> int | None:
    return scope.account_id if scope.kind == ScopeKind.ACCOUNT else (
        scope.strategy_id if scope.kind == ScopeKind.STRATEGY else None)


def _ledger_rows() -> list[ScopeLedger]:
    lock = " FOR UPDATE OF l" if connection.vendor == "postgresql" else ""
    return list(ScopeLedger.objects.raw(
        f"SELECT l.* FROM {ScopeLedger._meta.db_table} l JOIN {TradingScope._meta.db_table} s "
        f"ON s.id = l.scope_id ORDER BY s.level, s.id{lock}"))


def guard_evaluate(*, now: datetime | None = None) -> EvaluationResult:
    """Count every ledger, compute live equity, move the baselines, trip what must trip."""
    now = now or timezone.now()
    scope_rows_ensure(every=True)
    scopes = {scope.pk: scope for scope in TradingScope.objects.select_related(
        "account", "strategy")}
    with transaction.atomic():  # exact: nothing counted is added while the ledgers are held
        ledgers = _ledger_rows()
        figures = Book(now=now).figures()
        rows = []
        for ledger in ledgers:
            scope = scopes[ledger.pk]
            held = figures.get((scope.kind, _target(scope))) or ScopeFigures()
            symbols = ({symbol: str(value) for symbol, value in held.symbol_exposure.items()}
                       if scope.kind == ScopeKind.ACCOUNT else {})  # the symbol limit's scope
            # the gate starts a ledger's tracking itself (its rate window needs the
            # entries of the last minute); the count here keeps or ends it
            rows.append((ledger.pk, ledger.tracked and scope_limits(scope).counted,
                         held.open_positions, held.exposure, now, symbols))
        update_rows(ScopeLedger, ("tracked", "open_positions", "exposure", "exact_at",
                                  "symbol_exposure"), rows)
    result = EvaluationResult(scopes=len(scopes))
    with transaction.atomic():
        evaluated = []
        for scope in TradingScope.objects.select_for_update(of=("self",)).select_related(
                "account").filter(kind__in=[ScopeKind.GLOBAL, ScopeKind.ACCOUNT]).order_by(
                "level", "id"):
            held = figures.get((scope.kind, _target(scope)))
            if held is None or held.equity is None:
                continue
            if scope.kind == ScopeKind.GLOBAL:
                result.equity = held.equity
            trip = _evaluate_scope(scope, scope_limits(scope), held, now)
            if trip is not None:
                result.trips.append(f"{scope.label}: {trip.code}")
            else:
                evaluated.append(scope)
        update_rows(TradingScope, EQUITY_FIELDS,
                    [(scope.pk, *(getattr(scope, name) for name in EQUITY_FIELDS))
                     for scope in evaluated])
    result.closes_requested, result.entries_cancelled = trip_closes_request()
    return result


def _evaluate_scope(scope: TradingScope, limits: ScopeLimits, held: ScopeFigures,
                    now: datetime) -> GuardTrip | None:
    """Move the scope's equity and baselines; trip it when a loss limit is reached (then it
    is written here, with its new state)."""
    equity = held.equity
    scope.equity, scope.equity_at = equity, now
    scope.marks_as_of, scope.unmarked_positions = held.marks_as_of, held.unmarked
    today = timezone.localdate(now)
    if scope.day != today or scope.day_start_equity is None:
        scope.day, scope.day_start_equity = today, equity
    if scope.peak_equity is None or equity > scope.peak_equity:
        scope.peak_equity, scope.peak_at = equity, now
    if scope.trip_code or not limits.trips:
        return None
    found = _breach(scope, limits, equity)
    if found is None:
        return None  # written with the others, in one statement
    trip = _trip(scope, limits, *found, now=now)
    scope.save(update_fields=[*EQUITY_FIELDS, *STATE_FIELDS, "updated_at"])
    _after_trip(scope, trip)
    return trip


def loss_figures(scope: TradingScope) -> dict[str, Decimal | None]:
    """Today's loss and the drawdown from the peak, from the scope's stored equity."""
    equity, start, peak = scope.equity, scope.day_start_equity, scope.peak_equity
    loss = None if equity is None or start is None else start - equity
    return {
        "loss": loss,
        "loss_percent": (loss / start * 100).quantize(PERCENT) if loss is not None and start
        and start > 0 else None,
        "drawdown_percent": ((peak - equity) / peak * 100).quantize(PERCENT)
        if equity is not None and peak and peak > 0 else None,
    }


def _breach(scope: TradingScope, limits: ScopeLimits, equity: Decimal
            ) -> tuple[str, str, dict[str, Any]] | None:
    """``(code, message, numbers)`` of the first loss limit reached, else ``None``."""
    figures = loss_figures(scope)
    loss, loss_percent, drawdown = (figures["loss"], figures["loss_percent"],
                                    figures["drawdown_percent"])
    start, peak = plain(scope.day_start_equity), plain(scope.peak_equity)
    numbers = {"equity": plain(equity), "day": scope.day.isoformat(),
               "day_start_equity": start, "peak_equity": peak,
               "marks_as_of": scope.marks_as_of.isoformat() if scope.marks_as_of else None,
               "unmarked_positions": scope.unmarked_positions}
    amount, percent = limits.daily_loss_limit_amount, limits.daily_loss_limit_percent
    lost = {"loss": plain(loss), "loss_percent": plain(loss_percent)}
    if loss is not None and amount is not None and loss >= Decimal(str(amount)):
        return (TripCode.DAILY_LOSS, f"daily loss {plain(loss)} reached dailyLossLimitAmount "
                                     f"{amount:g} (equity {plain(equity)}, the day started at "
                                     f"{start})",
                {**numbers, **lost, "limit": f"{amount:g}", "limit_key": "dailyLossLimitAmount"})
    if loss_percent is not None and percent is not None and loss_percent >= Decimal(str(percent)):
        return (TripCode.DAILY_LOSS, f"daily loss {plain(loss)} = {plain(loss_percent)}% of the "
                                     f"day's starting equity {start} reached "
                                     f"dailyLossLimitPercent {percent:g}%",
                {**numbers, **lost, "limit": f"{percent:g}", "limit_key": "dailyLossLimitPercent"})
    limit = limits.max_drawdown_percent
    if drawdown is not None and limit is not None and drawdown >= Decimal(str(limit)):
        return (TripCode.DRAWDOWN, f"drawdown {plain(drawdown)}% from the peak {peak} (equity "
                                   f"{plain(equity)}) reached maxDrawdownPercent {limit:g}%",
                {**numbers, "drawdown_percent": plain(drawdown), "limit": f"{limit:g}",
                 "limit_key": "maxDrawdownPercent"})
    return None


def _trip(scope: TradingScope, limits: ScopeLimits, code: str, message: str,
          numbers: dict[str, Any], *, now: datetime) -> GuardTrip:
    """Move the scope to ``onTrip`` (a stricter state an operator set stays), keep the trip."""
    before = _state_of(scope)
    after_state = _stricter(scope.state, limits.on_trip)
    trip = GuardTrip.objects.create(
        scope=scope, code=code, tripped_at=now, message=message, numbers=numbers,
        state_before=scope.state, state_after=after_state, close_all=limits.close_all_on_trip)
    scope.state, scope.state_reason, scope.state_by = after_state, message[:255], GUARD_ACTOR
    scope.state_since, scope.trip_code = now, code
    old, new = changed_fields(before, _state_of(scope), STATE_FIELDS)
    audit_record(actor=GUARD_ACTOR, action="trading_state.trip", target=scope, before=old,
                 after={**new, "trip": trip.pk, "numbers": numbers}, reason=message)
    log.critical("guard: %s tripped (%s): %s", scope.label, code, message)
    return trip


def _after_trip(scope: TradingScope, trip: GuardTrip) -> None:
    """The CRITICAL alert, the live events and the platform's halt flag (same transaction)."""
    closes = "; its positions are being closed" if trip.close_all else ""
    alert_raise(position=None, kind=TRIPPED_ALERT, severity=AlertSeverity.CRITICAL,
                message=f"{scope.label} tripped ({trip.code}) and is {trip.state_after}: "
                        f"{trip.message}{closes}. Re-arm it with a reason once reviewed.")
    if scope.kind == ScopeKind.GLOBAL:
        _mirror_platform_state(scope)
    _announce(scope)


def _scope_positions(scope: TradingScope) -> Any:
    return Position.objects.filter(state__in=PositionState.holding(), **scope_filter(
        scope.kind, _target(scope), account="strategy__account_id", strategy="strategy_id"))


def _scope_resting_entries(scope: TradingScope) -> Any:
    return Order.objects.filter(
        purpose=OrderPurpose.ENTRY, status__in=[
            status for status in OrderStatus.active() if status != OrderStatus.CANCELLING],
        **scope_filter(scope.kind, _target(scope), account="account_id", strategy="strategy_id"))


def trip_closes_request() -> tuple[int, int]:
    """Keep every scope tripped with ``closeAllOnTrip`` flat: ``(closes, cancels)`` queued.

    The first pass of a trip queues the cancel of every entry order of the scope still on
    its way (one that filled later would open a position in the tripped scope), then the
    close of every position; each later pass closes what appeared since (an entry in doubt
    that turned out filled, a hand-over), each position once. Resumable: a worker that died
    half-way is followed by the next evaluation; a close or cancel already open stands.
    """
    queued = cancelled = 0
    for trip in GuardTrip.objects.filter(rearmed_at__isnull=True, close_all=True).select_related(
            "scope__account", "scope__strategy"):
        first = trip.closes_requested_at is None
        if first:
            for order in _scope_resting_entries(trip.scope).order_by("id"):
                try:
                    _, created = order_request_cancel(order, actor=GUARD_ACTOR)
                except InvalidStateTransition:
                    continue  # ended meanwhile
                cancelled += created
        positions = _scope_positions(trip.scope)
        if not first:  # a position the guard already asked to close is left to that close
            positions = positions.exclude(actions__requested_by=GUARD_ACTOR)
        count = 0
        for position in positions.order_by("id"):
            try:
                _, created = position_request_close(
                    position=position, reason=CloseReason.RISK, actor=GUARD_ACTOR,
                    kind=ActionKind.EMERGENCY_CLOSE,
                    note=f"{trip.code} trip of {trip.scope.label}")
            except InvalidStateTransition:
                continue  # closed meanwhile
            count += created
        if first:
            GuardTrip.objects.filter(pk=trip.pk, closes_requested_at__isnull=True).update(
                closes_requested_at=timezone.now(), closes_requested=count)
        elif count:
            GuardTrip.objects.filter(pk=trip.pk).update(
                closes_requested=F("closes_requested") + count)
        queued += count
    return queued, cancelled
