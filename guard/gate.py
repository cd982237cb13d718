"""The one pre-trade gate: every order passes it in the transaction that records it.

Registered in ``execution.gates`` and called by ``execution.pipeline.order_submit``,
the one path of every order (API entries, close actions, replacements, scripts).

1. **States.** The order's scopes — the platform, its account, its strategy — are
   read with a share lock (``FOR SHARE`` on PostgreSQL), so a state change waits for
   the decisions under way and every decision after it sees it. The strictest state
   applies. An order that reduces a position (a close: opposite side, at most what the
   position holds) passes ``REDUCING`` and ``HALTED``; anything else is refused with
   ``TRADING_HALTED`` / ``REDUCING_ONLY``, or the code of the trip that set the state
   (``DAILY_LOSS``, ``DRAWDOWN``).
2. **Limits**, for orders that do not reduce: ``MAX_NOTIONAL_PER_ORDER`` (stateless),
   then the counted ones — ``ORDER_RATE``, ``MAX_OPEN_POSITIONS``,
   ``MAX_EXPOSURE_SYMBOL``, ``MAX_EXPOSURE_ACCOUNT`` — against the ledger of each scope
   that sets one, locked for update: one decision per scope at a time, so concurrent
   entries at a limit cannot overshoot it. The ledger is exact when it was last
   counted plus what the gate let through since; before refusing on it, the gate
   counts the scope again, so a refusal rests on what is held now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model
from django.utils import timezone

from execution.gates import OrderRefused, order_refused
from execution.models import Candle, OrderPurpose, OrderSide
from guard.equity import entry_times, plain, scope_figures
from guard.limits import ScopeLimits, scope_limits
from guard.models import GuardTrip, ReasonCode, ScopeKind, ScopeLedger, TradingScope, TradingState
from lifecycle.models import Position, PositionSide, PositionState
from tradingsite.live_config import site_config
from tradingsite.sql import Write, orm_convert, orm_converters, update_rows_write

RATE_WINDOW_SECONDS = 60.0
MAX_RECENT = 1000  # the bound of maxOrdersPerMinute
LEDGER_FIELDS = ("tracked", "open_positions", "exposure", "recent_entries", "exact_at",
                 "symbol_exposure")
PERCENT = Decimal("0.0001")


SCOPE_COLUMNS = ("id", "kind", "level", "account_id", "strategy_id", "state", "state_reason",
                 "state_by", "state_since", "trip_code", "portfolio", "equity")
# in the models' field order (``Model.from_db`` maps a subset of columns by that order)
LEDGER_COLUMNS = ("scope_id", "tracked", "open_positions", "exposure", "symbol_exposure",
                  "recent_entries", "exact_at")


@cache
def _scopes_sql(vendor: str) -> str:
    """One table, no join: planned in a fraction of the time (a decision is a few statements).

    Only an account scope has an account, only a strategy scope a strategy (a constraint).
    """
    lock = " FOR SHARE" if vendor == "postgresql" else ""
    return (f"SELECT {', '.join(SCOPE_COLUMNS)} FROM {TradingScope._meta.db_table} WHERE "
            f"kind = 'global' OR account_id = %s OR strategy_id = %s ORDER BY level, id{lock}")


@cache
def _scopes_and_ledgers_sql(vendor: str) -> str:
    """The scopes share-locked and their ledgers locked for update, in one round trip."""
    lock = " FOR SHARE OF s FOR UPDATE OF l" if vendor == "postgresql" else ""
    columns = ", ".join([*(f"s.{c}" for c in SCOPE_COLUMNS), *(f"l.{c}" for c in LEDGER_COLUMNS)])
    return (f"SELECT {columns} FROM {TradingScope._meta.db_table} s JOIN "
            f"{ScopeLedger._meta.db_table} l ON l.scope_id = s.id WHERE s.kind = 'global' OR "
            f"s.account_id = %s OR s.strategy_id = %s ORDER BY s.level, s.id{lock}")


@cache
def _ledgers_sql(vendor: str, count: int) -> str:
    """The ledgers of the given scopes (given broadest first), locked in that order."""
    lock = " FOR UPDATE" if vendor == "postgresql" else ""
    marks = ", ".join(["%s"] * count)
    rank = " ".join(f"WHEN %s THEN {index}" for index in range(count))
    return (f"SELECT {', '.join(LEDGER_COLUMNS)} FROM {ScopeLedger._meta.db_table} WHERE "
            f"scope_id IN ({marks}) ORDER BY CASE scope_id {rank} END{lock}")


Part = tuple[type[Model], tuple[str, ...]]


def _fetch(parts: tuple[Part, ...], sql: str, params: list[Any]) -> list[list[Any]]:
    """Each row as model instances (one per part, its columns in turn), converted as the ORM
    would, without its per-query building (a decision runs on every order)."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for row in rows:
        instances, start = [], 0
        for model, names in parts:
            values = []
            for value, converter in zip(row[start:start + len(names)],
                                        orm_converters(model, names, db.alias), strict=True):
                values.append(orm_convert(value, converter, db))
            instances.append(model.from_db(db.alias, names, values))
            start += len(names)
        out.append(instances)
    return out


def _site_counts_every_scope() -> bool:
    """A site limit every scope counts (open positions, orders per minute): every order takes
    its scopes' ledgers, so it takes them with the states, in one statement."""
    site = site_config().portfolio
    return site.max_open_positions is not None or site.max_orders_per_minute is not None


def order_scopes(order: Any) -> tuple[list[TradingScope], dict[int, ScopeLedger] | None]:
    """The order's scope rows, share-locked, broadest first (created when missing), and —
    when every scope counts — their ledgers, locked for update in the same statement."""
    from guard.services import scope_rows_ensure

    wanted = 3 if order.strategy_id else 2
    params = [order.account_id, order.strategy_id]
    joined = _site_counts_every_scope()
    for _ in range(2):
        if joined:
            rows = _fetch(((TradingScope, SCOPE_COLUMNS), (ScopeLedger, LEDGER_COLUMNS)),
                          _scopes_and_ledgers_sql(connection.vendor), params)
        else:
            rows = _fetch(((TradingScope, SCOPE_COLUMNS),), _scopes_sql(connection.vendor),
                          params)
        if len(rows) == wanted:
            scopes = [row[0] for row in rows]
            for scope in scopes:  # their names come with the order, not from more queries
                if scope.kind == ScopeKind.ACCOUNT:
                    scope.account = order.account
                elif scope.kind == ScopeKind.STRATEGY:
                    scope.strategy = order.strategy
            return scopes, ({row[1].pk: row[1] for row in rows} if joined else None)
        scope_rows_ensure(account=order.account, strategy=order.strategy)
    raise RuntimeError(f"scope rows of order {order.client_order_id} could not be created")


def reduces_position(order: Any) -> bool:
    """A close of a held position: opposite side, at most what the position holds."""
    position = order.position if order.position_id else None
    if position is None or order.purpose == OrderPurpose.ENTRY:
        return False
    closing_side = OrderSide.SELL if position.side == PositionSide.LONG else OrderSide.BUY
    return (position.state in PositionState.active() and order.side == closing_side
            and Decimal(order.quantity) <= position.quantity)


def gate_order(order: Any) -> Write | None:
    """Refuse ``order`` (``OrderRefused``) or let it through.

    Where limits count, the order is counted in: the ledgers' new values come back as a
    ``Write`` that the caller runs with the order's insert (one round trip; the ledgers
    stay locked until then).
    """
    scopes, ledgers = order_scopes(order)
    reduces = reduces_position(order)
    binding = max(scopes, key=lambda s: (TradingState.strictness(s.state), -s.level))
    if binding.state != TradingState.ACTIVE and not reduces:
        raise state_refusal(binding, order)
    if reduces:
        return None  # closes go on in every state and are never limited
    limits = [(scope, scope_limits(scope, strategy=order.strategy)) for scope in scopes]
    decision = _Decision(order, timezone.now(), limits, ledgers)
    decision.check_notional()
    counted = [(scope, lim) for scope, lim in limits if lim.counted]
    return decision.check_counted(counted) if counted else None


def state_refusal(scope: TradingScope, order: Any) -> OrderRefused:
    """``TRADING_HALTED`` / ``REDUCING_ONLY``, or the trip's code when a trip set the state."""
    halted = scope.state == TradingState.HALTED
    where = "" if scope.kind == ScopeKind.GLOBAL else f" for {scope.label}"
    by = f"by {scope.state_by or 'unknown'}"
    numbers: dict[str, Any] = {"state": scope.state, "reason": scope.state_reason,
                               "by": scope.state_by, "since": scope.state_since.isoformat()}
    if order.position_id:
        numbers.update(position=order.position_id,
                       position_quantity=_text(Decimal(order.position.quantity)),
                       order_quantity=_text(Decimal(order.quantity)))
    if scope.trip_code:
        trip = GuardTrip.objects.filter(scope_id=scope.pk, rearmed_at__isnull=True).first()
        if trip is not None:
            numbers.update(trip=trip.numbers, tripped_at=trip.tripped_at.isoformat())
        code = scope.trip_code
        message = (f"{scope.label} tripped ({scope.trip_code}): {scope.state_reason}; "
                   f"{'no new orders' if halted else 'only orders that reduce a position'} "
                   "until an operator re-arms it")
    elif halted:
        code = ReasonCode.TRADING_HALTED
        message = (f"trading is halted{where}: {scope.state_reason or 'no reason given'} "
                   f"({by})")
    else:
        code = ReasonCode.REDUCING_ONLY
        message = (f"trading is reducing-only{where}: {scope.state_reason or 'no reason given'} "
                   f"({by}); only orders that reduce a position pass")
    return order_refused(code, message, scope=scope.label, numbers=numbers)


def _text(value: Decimal | None) -> str | None:
    return plain(value)


@dataclass
class _Decision:
    """One order's pass through the limits of its scopes."""

    order: Any
    now: datetime
    limits: list[tuple[TradingScope, ScopeLimits]]
    ledgers: dict[int, ScopeLedger] | None  # locked with the scopes, when every scope counts

    def __post_init__(self) -> None:
        self._price: Decimal | None = None
        self._priced = False

    # --- the order's value --------------------------------------------------------------

    @property
    def price(self) -> Decimal | None:
        """The limit price, the expected price, else the newest mark of the market."""
        if not self._priced:
            self._priced = True
            self._price = (self.order.price or self.order.expected_price
                           or _market_price(self.order))
        return Decimal(self._price) if self._price is not None else None

    @property
    def notional(self) -> Decimal | None:
        return None if self.price is None else Decimal(self.order.quantity) * self.price

    def notional_if_known(self) -> Decimal | None:
        """The notional when pricing the order costs no query (exposure nobody limits here
        is counted exactly at the next evaluation)."""
        if self._priced or self.order.price or self.order.expected_price:
            return self.notional
        return None

    def _unpriced(self, code: str, scope: TradingScope, key: str, limit: Any) -> OrderRefused:
        return order_refused(code, f"{scope.label}: {self.order.symbol} has no price or mark to "
                                   f"value the order against {key} {limit}: entry refused",
                             scope=scope.label, numbers={"limit": str(limit), "price": None})

    # --- stateless --------------------------------------------------------------------------

    def check_notional(self) -> None:
        for scope, lim in self.limits:
            limit = lim.max_notional_per_order
            if limit is None:
                continue
            notional = self.notional
            if notional is None:
                raise self._unpriced(ReasonCode.MAX_NOTIONAL_PER_ORDER, scope,
                                     "maxNotionalPerOrder", limit)
            if notional > Decimal(str(limit)):
                raise order_refused(
                    ReasonCode.MAX_NOTIONAL_PER_ORDER,
                    f"{scope.label}: order notional {_text(notional)} ({_text(Decimal(self.order.quantity))} "
                    f"× {_text(self.price)}) is above maxNotionalPerOrder {limit:g}",
                    scope=scope.label,
                    numbers={"notional": _text(notional), "limit": f"{limit:g}",
                             "quantity": _text(Decimal(self.order.quantity)),
                             "price": _text(self.price)})

    # --- counted, under the ledger locks ------------------------------------------------------

    def check_counted(self, counted: list[tuple[TradingScope, ScopeLimits]]) -> Write:
        ledgers = self.ledgers
        if ledgers is None:
            ids = [scope.pk for scope, _ in counted]
            ledgers = {row[0].pk: row[0] for row in _fetch(
                ((ScopeLedger, LEDGER_COLUMNS),), _ledgers_sql(connection.vendor, len(ids)),
                [*ids, *ids])}
        checks = [_Counted(scope, lim, ledgers[scope.pk], self) for scope, lim in counted]
        for check in checks:
            if not check.ledger.tracked:
                check.recount()
        opens = bool(self.order.strategy_id)  # only a strategy's entry opens a position
        for step in (_Counted.check_rate, *((_Counted.check_open, _Counted.check_symbol,
                                             _Counted.check_exposure) if opens else ())):
            for check in checks:
                check.run(step)
        for check in checks:
            check.admit(opens)
        return update_rows_write(ScopeLedger, LEDGER_FIELDS, [check.row() for check in checks])


def _market_price(order: Any) -> Decimal | None:
    """The newest candle close of the order's market (its strategy's timeframe first), else
    the newest mark of a position held in the symbol on the account."""
    candles = Candle.objects.filter(exchange_id=order.account.exchange_id, symbol=order.symbol)
    if order.strategy_id:
        close = candles.filter(timeframe=order.strategy.timeframe).order_by(
            "-open_time").values_list("close", flat=True).first()
        if close is not None:
            return close
    close = candles.order_by("-open_time").values_list("close", flat=True).first()
    if close is not None:
        return close
    return Position.objects.filter(
        symbol=order.symbol, strategy__account_id=order.account_id,
        state__in=PositionState.active(), last_price__isnull=False).order_by(
        "-last_price_at").values_list("last_price", flat=True).first()


class _Counted:
    """One scope's counted limits against its locked ledger."""

    def __init__(self, scope: TradingScope, limits: ScopeLimits, ledger: ScopeLedger,
                 decision: _Decision) -> None:
        self.scope, self.limits, self.ledger, self.decision = scope, limits, ledger, decision
        self.recounted = False
        now = decision.now.timestamp()
        self.recent = [at for at in ledger.recent_entries if at > now - RATE_WINDOW_SECONDS]
        self._equity: Decimal | None = scope.equity

    def recount(self) -> None:
        """Count what the scope holds now (it is locked: nobody adds to it meanwhile).

        A ledger that starts counting (a limit was just set) takes its rate window from
        the entries recorded in the last minute, not only those it counted itself.
        """
        now, ledger = self.decision.now, self.ledger
        figures = scope_figures(self.scope.kind, _target(self.scope), now=now)
        if not ledger.tracked:
            self.recent = entry_times(self.scope.kind, _target(self.scope),
                                      since=now - timedelta(seconds=RATE_WINDOW_SECONDS))
        ledger.open_positions, ledger.exposure = figures.open_positions, figures.exposure
        ledger.symbol_exposure = ({symbol: str(value)
                                   for symbol, value in figures.symbol_exposure.items()}
                                  if self.scope.kind == ScopeKind.ACCOUNT else {})
        ledger.exact_at, ledger.tracked = now, True
        if figures.equity is not None and self._equity is None:
            self._equity = figures.equity
        self.recounted = True

    def run(self, step: Callable[[_Counted], OrderRefused | None]) -> None:
        """A refusal on the ledger is counted again first: it must rest on what is held now.

        (The rate window is the gate's own record: counting the database again cannot
        change it.)
        """
        refusal = step(self)
        if refusal is not None and not self.recounted and step is not _Counted.check_rate:
            self.recount()
            refusal = step(self)
        if refusal is not None:
            raise refusal

    def equity(self) -> Decimal | None:
        if self._equity is None and self.scope.kind != ScopeKind.STRATEGY:
            self._equity = scope_figures(self.scope.kind, _target(self.scope),
                                         now=self.decision.now).equity
        return self._equity

    # --- the limits ------------------------------------------------------------------------

    def check_rate(self) -> OrderRefused | None:
        limit = self.limits.max_orders_per_minute
        if limit is None or len(self.recent) < limit:
            return None
        retry = self.recent[-limit] + RATE_WINDOW_SECONDS - self.decision.now.timestamp()
        return order_refused(
            ReasonCode.ORDER_RATE,
            f"{self.scope.label}: {len(self.recent)} entries in the last 60 s, "
            f"maxOrdersPerMinute {limit}: entry refused (the next is possible in "
            f"{max(retry, 0):.1f} s)", scope=self.scope.label,
            numbers={"entries_last_minute": len(self.recent), "limit": limit,
                     "retry_after_seconds": round(max(retry, 0.0), 3)})

    def check_open(self) -> OrderRefused | None:
        limit = self.limits.max_open_positions
        if limit is None or self.ledger.open_positions + 1 <= limit:
            return None
        return order_refused(
            ReasonCode.MAX_OPEN_POSITIONS,
            f"{self.scope.label}: {self.ledger.open_positions} positions held or on their way, "
            f"maxOpenPositions {limit}: entry refused", scope=self.scope.label,
            numbers={"open_positions": self.ledger.open_positions, "limit": limit})

    def _percent_check(self, code: str, key: str, limit: float | None, held: Decimal,
                       what: str) -> OrderRefused | None:
        if limit is None:
            return None
        notional = self.decision.notional
        if notional is None:
            return self.decision._unpriced(code, self.scope, key, f"{limit:g}%")
        equity = self.equity()
        after = held + notional
        percent = (after / equity * 100).quantize(PERCENT) if equity and equity > 0 else None
        if percent is not None and percent <= Decimal(str(limit)):
            return None
        shown = f"{_text(percent)}% of equity {_text(equity)}" if percent is not None else (
            f"against equity {_text(equity)}")
        return order_refused(
            code, f"{self.scope.label}: {what} would be {_text(after)} ({shown}), {key} "
                  f"{limit:g}%: entry refused", scope=self.scope.label,
            numbers={"exposure_after": _text(after), "exposure": _text(held),
                     "order_notional": _text(notional), "equity": _text(equity),
                     "percent_after": _text(percent), "limit_percent": f"{limit:g}",
                     **({"symbol": self.decision.order.symbol} if "SYMBOL" in code else {})})

    def check_symbol(self) -> OrderRefused | None:
        symbol = self.decision.order.symbol
        held = Decimal(self.ledger.symbol_exposure.get(symbol, "0"))
        return self._percent_check(ReasonCode.MAX_EXPOSURE_SYMBOL, "maxSymbolExposurePercent",
                                   self.limits.max_symbol_exposure_percent, held,
                                   f"{symbol} exposure")

    def check_exposure(self) -> OrderRefused | None:
        return self._percent_check(ReasonCode.MAX_EXPOSURE_ACCOUNT, "maxExposurePercent",
                                   self.limits.max_exposure_percent, self.ledger.exposure,
                                   "exposure")

    # --- letting it through ----------------------------------------------------------------

    def admit(self, opens: bool) -> None:
        """Count the order in: the ledger now holds it until the next exact count."""
        ledger = self.ledger
        self.recent.append(self.decision.now.timestamp())
        if opens:
            notional = (self.decision.notional if self.counts_exposure
                        else self.decision.notional_if_known())
            ledger.open_positions += 1
            if notional is not None:
                ledger.exposure += notional
                if self.scope.kind == ScopeKind.ACCOUNT:  # the symbol limit is an account's
                    symbol = self.decision.order.symbol
                    ledger.symbol_exposure[symbol] = str(
                        Decimal(ledger.symbol_exposure.get(symbol, "0")) + notional)

    @property
    def counts_exposure(self) -> bool:
        return (self.limits.max_exposure_percent is not None
                or self.limits.max_symbol_exposure_percent is not None)

    def row(self) -> tuple[Any, ...]:
        """``(pk, *LEDGER_FIELDS)``: the decision writes every ledger it holds in one statement
        (riding in the order's insert)."""
        ledger = self.ledger
        return (ledger.pk, ledger.tracked, ledger.open_positions, ledger.exposure,
                self.recent[-MAX_RECENT:], ledger.exact_at, ledger.symbol_exposure)


def _target(scope: TradingScope) -> int | None:
    return scope.account_id if scope.kind == ScopeKind.ACCOUNT else (
        scope.strategy_id if scope.kind == ScopeKind.STRATEGY else None)

