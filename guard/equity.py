"""Live equity and what each scope holds, from a handful of aggregate queries.

Equity of an account = its starting capital + the realised PnL of its closed trades
(net of fees, as ``lifecycle.Trade``) + for each position still held: the realised
part of its partial exits net of its entry and exit fees, plus its unrealised PnL at
the mark. The platform's equity is the sum over accounts.

The mark of a position is the newer of two prices the platform has today: the
position's own ``last_price`` (set by the risk check and by fills) and the close of
the newest candle of its market (refreshed every minute by the candle task). Both
carry a time; the oldest mark a figure rests on is reported (``marks_as_of``), and a
position with no mark at all is valued at its entry price and counted as unmarked.

Positions are summed per (strategy, symbol, side) in the database, so the cost grows
with the number of markets, not of positions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, F, Max, Min, Q, Sum
from django.db.models.functions import Coalesce

from execution.models import Candle, ExchangeAccount, Order, OrderPurpose, OrderStatus
from guard.models import ScopeKind
from lifecycle.models import Position, PositionSide, PositionState, Strategy, Trade
from tradingsite.sql import connection_for, orm_convert, orm_converters

ZERO = Decimal("0")
_SUM = DecimalField(max_digits=40, decimal_places=12)
TIMEFRAME_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                     "2h": 7200, "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400}

def plain(value: Decimal | None) -> str | None:
    """A decimal for people and JSON: no exponent, no trailing zeros (210, 0.5, 2.1)."""
    if value is None:
        return None
    text = f"{Decimal(value).normalize():f}"
    return "0" if text in ("-0", "0") else text


ScopeKey = tuple[str, int | None]  # (kind, account or strategy id; None for the platform)


@dataclass
class ScopeFigures:
    """What a scope holds now; ``equity`` for the platform and accounts only."""

    open_positions: int = 0  # positions held + entry orders on their way
    exposure: Decimal = ZERO  # gross notional at the marks
    symbol_exposure: dict[str, Decimal] = field(default_factory=dict)
    equity: Decimal | None = None
    unrealised: Decimal = ZERO
    marks_as_of: datetime | None = None
    unmarked: int = 0

    def add_exposure(self, symbol: str, notional: Decimal) -> None:
        self.exposure += notional
        self.symbol_exposure[symbol] = self.symbol_exposure.get(symbol, ZERO) + notional

    def saw_mark(self, at: datetime | None) -> None:
        if at is not None and (self.marks_as_of is None or at < self.marks_as_of):
            self.marks_as_of = at


@dataclass(frozen=True)
class _Holding:
    account_id: int
    strategy_id: int
    symbol: str
    count: int
    notional: Decimal
    value: Decimal  # realised part net of fees + unrealised at the mark
    unrealised: Decimal
    mark_at: datetime | None
    unmarked: int


@dataclass(frozen=True)
class _Pending:
    account_id: int
    strategy_id: int
    symbol: str
    count: int
    notional: Decimal


def scope_filter(kind: str, target: int | None, *, account: str, strategy: str
                 ) -> dict[str, Any]:
    """The filter of a scope's rows: ``account``/``strategy`` name the lookups to its target."""
    if kind == ScopeKind.ACCOUNT:
        return {account: target}
    if kind == ScopeKind.STRATEGY:
        return {strategy: target}
    return {}


def entry_times(kind: str, target: int | None, *, since: datetime) -> list[float]:
    """When the scope's entry orders were recorded after ``since`` (epoch s, oldest first):
    the rate window of a ledger that starts counting (its limit was just set)."""
    return [at.timestamp() for at in Order.objects.filter(
        purpose=OrderPurpose.ENTRY, created_at__gt=since,
        **scope_filter(kind, target, account="account_id", strategy="strategy_id"))
        .order_by("created_at").values_list("created_at", flat=True)]


# A candle older than this is no mark (a daily candle closes once a day).
MARK_LOOKBACK = timedelta(days=1)


def _market_marks(markets: set[tuple[str, str]], now: datetime
                  ) -> dict[tuple[str, str], tuple[Decimal, datetime]]:
    """(exchange id, symbol) → (close, close time) of its newest candle of any timeframe.

    One statement: the newest open time per series (bounded to ``MARK_LOOKBACK``, so the
    candle history does not grow its cost), joined back to its row.
    """
    if not markets:
        return {}
    exchanges = sorted({exchange for exchange, _ in markets})
    symbols = sorted({symbol for _, symbol in markets})
    table = Candle._meta.db_table
    sql = (f"SELECT c.id, c.exchange_id, c.symbol, c.timeframe, c.open_time, c.close FROM "
           f"{table} c JOIN (SELECT exchange_id, symbol, timeframe, MAX(open_time) AS newest "
           f"FROM {table} WHERE exchange_id IN ({', '.join(['%s'] * len(exchanges))}) AND "
           f"symbol IN ({', '.join(['%s'] * len(symbols))}) AND open_time >= %s "
           f"GROUP BY exchange_id, symbol, timeframe) m ON c.exchange_id = m.exchange_id AND "
           f"c.symbol = m.symbol AND c.timeframe = m.timeframe AND c.open_time = m.newest")
    marks: dict[tuple[str, str], tuple[Decimal, datetime]] = {}
    # Model instances would cost more than the statement: the ORM's converters on tuples.
    db = connection_for(Candle)
    open_time_of, close_of = orm_converters(Candle, ("open_time", "close"), db.alias)
    with db.cursor() as cursor:
        cursor.execute(sql, [*exchanges, *symbols, now - MARK_LOOKBACK])
        rows = cursor.fetchall()
    for _, exchange_id, symbol, timeframe, open_time, close in rows:
        open_time, close = orm_convert(open_time, open_time_of, db), orm_convert(close, close_of, db)
        closed_at = open_time + timedelta(seconds=TIMEFRAME_SECONDS.get(timeframe, 0))
        key = (exchange_id, symbol)
        if key in markets and (key not in marks or closed_at > marks[key][1]):
            marks[key] = (close, closed_at)
    return marks


class Book:
    """The positions, pending entries and realised PnL of one scope (or of everything)."""

    def __init__(self, *, kind: str = ScopeKind.GLOBAL, target: int | None = None,
                 now: datetime) -> None:
        self.kind, self.target, self.now = kind, target, now
        self.accounts = {row["id"]: row for row in ExchangeAccount.objects.filter(**scope_filter(
            kind, target, account="id", strategy="strategies__id")).values(
            "id", "exchange_id", "starting_capital")}
        held, pending = self._held_rows(), self._pending_rows()
        self.marks = _market_marks(
            {(self._exchange(row["strategy__account_id"]), row["symbol"]) for row in held}
            | {(self._exchange(row["account_id"]), row["symbol"]) for row in pending}, now)
        self.holdings = [self._holding(row) for row in held]
        self.pending = [self._pending(row) for row in pending]
        self.realised = self._load_realised() if kind != ScopeKind.STRATEGY else {}

    def _held_rows(self) -> list[dict[str, Any]]:
        """Positions summed per strategy, symbol and side; the account comes from the
        strategy (grouping by it would join and sort every position: a third of the time)."""
        rows = list(Position.objects.filter(
            state__in=PositionState.active(),
            **scope_filter(self.kind, self.target, account="strategy__account_id",
                            strategy="strategy_id"))
            .values("strategy_id", "symbol", "side")
            .annotate(count=Count("id"), held=Sum("quantity"),
                      at_entry=Sum(F("quantity") * F("entry_price"), output_field=_SUM),
                      at_own_mark=Sum(F("quantity") * Coalesce("last_price", "entry_price"),
                                      output_field=_SUM),
                      closed_at_entry=Sum(F("closed_quantity") * F("entry_price"),
                                          output_field=_SUM),
                      exit_value=Sum("exit_value", output_field=_SUM),
                      fees=Sum(F("entry_fee") + F("exit_fees"), output_field=_SUM),
                      newest_mark=Max("last_price_at"), oldest_mark=Min("last_price_at"),
                      unmarked=Count("id", filter=Q(last_price__isnull=True)))
            .order_by())
        accounts = dict(Strategy.objects.filter(
            pk__in={row["strategy_id"] for row in rows}).values_list("id", "account_id"))
        for row in rows:
            row["strategy__account_id"] = accounts[row["strategy_id"]]
        return rows

    def _exchange(self, account_id: int) -> str:
        account = self.accounts.get(account_id)
        return account["exchange_id"] if account else ""

    def _holding(self, row: dict[str, Any]) -> _Holding:
        direction = 1 if row["side"] == PositionSide.LONG else -1
        quantity, at_entry = row["held"] or ZERO, row["at_entry"] or ZERO
        candle = self.marks.get((self._exchange(row["strategy__account_id"]), row["symbol"]))
        newest_own = row["newest_mark"]
        if candle is not None and (newest_own is None or candle[1] > newest_own):
            notional, mark_at, unmarked = candle[0] * quantity, candle[1], 0
        else:
            notional, mark_at, unmarked = row["at_own_mark"] or ZERO, row["oldest_mark"], \
                row["unmarked"]
        unrealised = direction * (notional - at_entry)
        realised = direction * ((row["exit_value"] or ZERO) - (row["closed_at_entry"] or ZERO)) \
            - (row["fees"] or ZERO)
        return _Holding(account_id=row["strategy__account_id"], strategy_id=row["strategy_id"],
                        symbol=row["symbol"], count=row["count"], notional=abs(notional),
                        value=realised + unrealised, unrealised=unrealised, mark_at=mark_at,
                        unmarked=unmarked)

    def _pending_rows(self) -> list[dict[str, Any]]:
        """Entry orders that will open a position when they fill (their strategy is set)."""
        return list(Order.objects.filter(
            status__in=OrderStatus.active(), purpose=OrderPurpose.ENTRY, position__isnull=True,
            strategy__isnull=False,
            **scope_filter(self.kind, self.target, account="account_id",
                            strategy="strategy_id"))
            .values("account_id", "strategy_id", "symbol")
            .annotate(count=Count("id"),
                      priced=Sum(F("quantity") * Coalesce("price", "expected_price"),
                                 output_field=_SUM),
                      unpriced=Sum("quantity", filter=Q(price__isnull=True,
                                                        expected_price__isnull=True),
                                   output_field=_SUM))
            .order_by())

    def _pending(self, row: dict[str, Any]) -> _Pending:
        """An entry without a price is valued at its market's mark (nothing when unknown)."""
        notional = row["priced"] or ZERO
        if row["unpriced"]:
            notional += row["unpriced"] * (self.mark_of(row["account_id"], row["symbol"]) or ZERO)
        return _Pending(account_id=row["account_id"], strategy_id=row["strategy_id"],
                        symbol=row["symbol"], count=row["count"], notional=notional)

    def mark_of(self, account_id: int, symbol: str) -> Decimal | None:
        """The newest candle close of the account's market, if any was loaded."""
        mark = self.marks.get((self._exchange(account_id), symbol))
        return mark[0] if mark else None

    def _load_realised(self) -> dict[int, Decimal]:
        trades = Trade.objects.filter(**scope_filter(
            self.kind, self.target, account="strategy__account_id", strategy="strategy_id"))
        return {row["strategy__account_id"]: row["pnl"] or ZERO for row in trades.values(
            "strategy__account_id").annotate(pnl=Sum("pnl")).order_by()}

    # --- figures per scope ---------------------------------------------------------------

    def figures(self) -> dict[ScopeKey, ScopeFigures]:
        """Figures of every scope this book covers: the platform, each account, each strategy."""
        out: dict[ScopeKey, ScopeFigures] = defaultdict(ScopeFigures)

        def scopes(account_id: int, strategy_id: int) -> Iterable[ScopeFigures]:
            yield out[(ScopeKind.GLOBAL, None)]
            yield out[(ScopeKind.ACCOUNT, account_id)]
            yield out[(ScopeKind.STRATEGY, strategy_id)]

        if self.kind == ScopeKind.GLOBAL:
            out[(ScopeKind.GLOBAL, None)] = ScopeFigures(equity=ZERO)
        for account_id, account in self.accounts.items():
            figures = out[(ScopeKind.ACCOUNT, account_id)]
            figures.equity = account["starting_capital"] + self.realised.get(account_id, ZERO)
            if self.kind == ScopeKind.GLOBAL:
                out[(ScopeKind.GLOBAL, None)].equity += figures.equity
        for holding in self.holdings:
            for figures in scopes(holding.account_id, holding.strategy_id):
                figures.open_positions += holding.count
                figures.add_exposure(holding.symbol, holding.notional)
                figures.unrealised += holding.unrealised
                if figures.equity is not None:
                    figures.equity += holding.value
                figures.saw_mark(holding.mark_at)
                figures.unmarked += holding.unmarked
        for entry in self.pending:
            for figures in scopes(entry.account_id, entry.strategy_id):
                figures.open_positions += entry.count
                figures.add_exposure(entry.symbol, entry.notional)
        return dict(out)

    def figures_of(self, kind: str, target: int | None) -> ScopeFigures:
        return self.figures().get((kind, target)) or ScopeFigures(
            equity=ZERO if kind != ScopeKind.STRATEGY else None)


def scope_figures(kind: str, target: int | None, *, now: datetime) -> ScopeFigures:
    """The figures of one scope, counted now (the gate on a limit's edge)."""
    return Book(kind=kind, target=target, now=now).figures_of(kind, target)

