"""What a trader used to FreqUI reads beside the report: profit per day, week or month,
a summary per strategy, and balances and exposure per exchange account.

Reads only. Amounts are in each account's quote currency; a row that adds several
accounts says which currency (``""`` when the accounts differ). "Balance" is the
platform's own book: the account's starting capital plus the PnL realised on it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from analytics import selectors
from analytics.periods import Period, Window, local_midnight, period_window
from analytics.selectors import TradeFilters
from execution.models import ExchangeAccount
from lifecycle.models import Position, PositionSide, PositionState, Strategy, Trade

UNITS = ("day", "week", "month")
ZERO = Decimal("0")


def _percent(part: Decimal, whole: Decimal) -> float | None:
    return float(part / whole * 100) if whole > 0 else None


def _unit_start(day: date, unit: str) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _previous_start(start: date, unit: str) -> date:
    if unit == "day":
        return start - timedelta(days=1)
    if unit == "week":
        return start - timedelta(days=7)
    return (start - timedelta(days=1)).replace(day=1)


def _currency(accounts: list[ExchangeAccount]) -> str:
    codes = {account.quote_currency for account in accounts}
    return codes.pop() if len(codes) == 1 else ""


def scope_currency(strategy: str | None = None) -> str:
    """The quote currency of the accounts of a strategy (all when ``None``); '' when they differ."""
    return _currency(_accounts_in_scope(TradeFilters(strategy=strategy)))


def _accounts_in_scope(filters: TradeFilters) -> list[ExchangeAccount]:
    strategies = Strategy.objects.all()
    if filters.strategy:
        strategies = strategies.filter(name=filters.strategy)
    return list(ExchangeAccount.objects.filter(pk__in=strategies.values("account_id")))


def profit_table(*, unit: str, count: int, filters: TradeFilters | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Realised PnL per local day, ISO week or calendar month, the current one first.

    ``pnl_percent`` is the PnL against the equity at the unit's start (starting capital
    plus everything realised before it), as FreqUI's relative profit.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    filters = filters or TradeFilters()
    now = now or timezone.now()
    tz: tzinfo = timezone.get_default_timezone()
    first = _unit_start(now.astimezone(tz).date(), unit)
    starts = [first]
    for _ in range(count - 1):
        starts.append(_previous_start(starts[-1], unit))
    starts.reverse()
    bounds = [local_midnight(day, tz) for day in starts]
    trades = selectors.trades_in(filters, Window(bounds[0], None)).order_by()
    rows = trades.values_list("closed_at", "pnl", "fees")
    buckets: dict[int, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO, ZERO, ZERO])
    for closed_at, pnl, fees in rows:
        index = _bucket(bounds, closed_at)
        bucket = buckets[index]
        bucket[0] += 1
        bucket[1] += pnl > 0
        bucket[2] += pnl < 0
        bucket[3] += pnl
        bucket[4] += fees
    accounts = _accounts_in_scope(filters)
    capital = sum((account.starting_capital for account in accounts), ZERO)
    equity = capital + selectors.realised_pnl_before(filters, bounds[0], checkpoint=False)
    table = []
    for index, start in enumerate(bounds):
        trades_n, wins, losses, pnl, fees = buckets.get(index, [ZERO] * 5)
        table.append({"start": start, "end": bounds[index + 1] if index + 1 < len(bounds)
                      else None, "trades": int(trades_n), "wins": int(wins),
                      "losses": int(losses), "pnl": pnl, "fees": fees,
                      "pnl_percent": _percent(pnl, equity), "start_equity": equity})
        equity += pnl
    return {"unit": unit, "time_zone": str(tz), "currency": _currency(accounts),
            "starting_capital": capital, "rows": table[::-1]}


def _bucket(bounds: list[datetime], moment: datetime) -> int:
    return max(0, bisect_right(bounds, moment) - 1)


@dataclass(frozen=True)
class _Open:
    positions: int = 0
    unrealised_pnl: Decimal = ZERO
    long_exposure: Decimal = ZERO
    short_exposure: Decimal = ZERO


def _open_book(group_by: str) -> dict[int, _Open]:
    """Held positions per strategy or account: counts, gross unrealised PnL and exposure.

    Exposure is the notional at the mark price (the entry price before the first mark).
    """
    book: dict[int, list] = defaultdict(lambda: [0, ZERO, ZERO, ZERO])
    held = (Position.objects.filter(state__in=PositionState.active())
            .values_list(group_by, "side", "quantity", "entry_price", "last_price"))
    for key, side, quantity, entry, mark in held:
        price = mark if mark is not None else entry
        direction = 1 if side == PositionSide.LONG else -1
        entry_book = book[key]
        entry_book[0] += 1
        if mark is not None:
            entry_book[1] += (mark - entry) * quantity * direction
        entry_book[2 if direction == 1 else 3] += abs(quantity * price)
    return {key: _Open(*values) for key, values in book.items()}


def strategy_summary(*, period: str = Period.ALL, now: datetime | None = None
                     ) -> dict[str, Any]:
    """Per strategy: closed trades of the period, win rate, PnL, and what it holds now."""
    now = now or timezone.now()
    window = period_window(period, now, timezone.get_default_timezone())
    trades = Trade.objects.order_by()
    if window.start is not None:
        trades = trades.filter(closed_at__gte=window.start, closed_at__lt=window.end)
    closed = {row["strategy_id"]: row for row in trades.values("strategy_id").annotate(
        trades=Count("id"), wins=Count("id", filter=Q(pnl__gt=0)),
        losses=Count("id", filter=Q(pnl__lt=0)), pnl=Sum("pnl"), fees=Sum("fees"),
        pnl_percent_sum=Sum("pnl_percent"))}
    held = _open_book("strategy_id")
    rows = []
    for strategy in Strategy.objects.select_related("account").order_by("name"):
        row = closed.get(strategy.pk, {})
        count = row.get("trades", 0)
        pnl = row.get("pnl") or ZERO
        book = held.get(strategy.pk, _Open())
        if not count and not book.positions:
            continue
        rows.append({
            "strategy": strategy.name, "account": strategy.account.name,
            "currency": strategy.account.quote_currency, "trades": count,
            "wins": row.get("wins", 0), "losses": row.get("losses", 0),
            "win_rate": row.get("wins", 0) / count if count else None,
            "pnl": pnl, "fees": row.get("fees") or ZERO,
            "average_pnl_percent": (float(row["pnl_percent_sum"]) / count if count else None),
            "return_percent": _percent(pnl, strategy.account.starting_capital),
            "open_positions": book.positions, "unrealised_pnl": book.unrealised_pnl})
    return {"period": str(Period(period)), "window": {"start": window.start, "end": window.end},
            "strategies": rows}


def account_balances() -> dict[str, Any]:
    """Per account: balance (starting capital + realised), open exposure and equity."""
    realised = {row["strategy__account_id"]: row["pnl"] for row in
                Trade.objects.order_by().values("strategy__account_id").annotate(pnl=Sum("pnl"))}
    held = _open_book("strategy__account_id")
    rows = []
    for account in ExchangeAccount.objects.order_by("name"):
        book = held.get(account.pk, _Open())
        balance = account.starting_capital + (realised.get(account.pk) or ZERO)
        equity = balance + book.unrealised_pnl
        gross = book.long_exposure + book.short_exposure
        rows.append({
            "account": account.name, "exchange_id": account.exchange_id,
            "paper": account.is_paper, "currency": account.quote_currency,
            "starting_capital": account.starting_capital,
            "realised_pnl": realised.get(account.pk) or ZERO, "balance": balance,
            "open_positions": book.positions, "unrealised_pnl": book.unrealised_pnl,
            "equity": equity, "long_exposure": book.long_exposure,
            "short_exposure": book.short_exposure,
            "net_exposure": book.long_exposure - book.short_exposure,
            "gross_exposure": gross, "exposure_percent": _percent(gross, equity)})
    return {"accounts": rows}
