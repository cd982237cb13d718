"""Balances and exposure per exchange account, at the latest marks.

For each account: its balance in the quote currency (the last balance its stream
owner read over REST; before the first read, the starting capital plus the realised
PnL of its trades), the unrealised PnL of its held positions at their marks, the
equity (balance + unrealised), and its exposure per symbol — net quantity, gross
notional (Σ |quantity| × mark) and that notional as a percentage of equity — with
the age of the oldest mark behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from execution.models import AccountStream, ExchangeAccount
from lifecycle.models import Position, PositionSide, PositionState, Trade

CENT = Decimal("0.01")
PLACES = Decimal("1e-8")


@dataclass
class SymbolExposure:
    symbol: str
    net_quantity: Decimal = Decimal(0)
    gross_notional: Decimal = Decimal(0)
    unrealised_pnl: Decimal = Decimal(0)
    positions: int = 0
    mark_price: Decimal | None = None
    oldest_mark_at: datetime | None = None
    unmarked: int = 0  # positions without any mark (valued at entry)

    def as_dict(self, equity: Decimal, now: datetime, stale_after: float) -> dict[str, Any]:
        age = (now - self.oldest_mark_at).total_seconds() if self.oldest_mark_at else None
        return {"symbol": self.symbol, "positions": self.positions,
                "net_quantity": self.net_quantity.normalize(),
                "mark_price": self.mark_price, "mark_age_seconds": _seconds(age),
                "mark_stale": age is None or age > stale_after or self.unmarked > 0,
                "gross_notional": self.gross_notional.quantize(PLACES),
                "percent_of_equity": (self.gross_notional / equity * 100).quantize(CENT)
                if equity > 0 else None,
                "unrealised_pnl": self.unrealised_pnl.quantize(PLACES)}


@dataclass
class AccountExposure:
    account: ExchangeAccount
    balance: Decimal
    balance_source: str
    balance_at: datetime | None
    symbols: dict[str, SymbolExposure] = field(default_factory=dict)

    @property
    def unrealised_pnl(self) -> Decimal:
        return sum((s.unrealised_pnl for s in self.symbols.values()), Decimal(0))

    @property
    def equity(self) -> Decimal:
        return self.balance + self.unrealised_pnl

    def as_dict(self, now: datetime) -> dict[str, Any]:
        sync = self.account.sync_settings()
        equity = self.equity
        gross = sum((s.gross_notional for s in self.symbols.values()), Decimal(0))
        return {
            "account": self.account.name, "exchange": self.account.exchange_id,
            "currency": self.account.quote_currency,
            "balance": self.balance.quantize(PLACES), "balance_source": self.balance_source,
            "balance_at": self.balance_at,
            "unrealised_pnl": self.unrealised_pnl.quantize(PLACES),
            "equity": equity.quantize(PLACES),
            "gross_notional": gross.quantize(PLACES),
            "percent_of_equity": (gross / equity * 100).quantize(CENT) if equity > 0 else None,
            "exposure": [s.as_dict(equity, now, 3 * sync.mark_refresh_seconds)
                         for _, s in sorted(self.symbols.items())],
        }


def account_exposures(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Balance, unrealised PnL, equity and exposure per symbol of every enabled account."""
    now = now or timezone.now()
    accounts = {a.pk: a for a in ExchangeAccount.objects.filter(enabled=True).order_by("name")}
    streams = {s.account_id: s for s in AccountStream.objects.filter(account_id__in=accounts)}
    realised = dict(Trade.objects.filter(strategy__account_id__in=accounts).values(
        "strategy__account_id").annotate(total=Sum("pnl")).values_list(
        "strategy__account_id", "total").order_by())
    out: dict[int, AccountExposure] = {}
    for pk, account in accounts.items():
        stream = streams.get(pk)
        line = (stream.balances or {}).get(account.quote_currency) if stream else None
        if line and line.get("total") is not None:
            out[pk] = AccountExposure(account, Decimal(line["total"]),
                                      "exchange (last reconcile)", stream.balances_at)
        else:
            out[pk] = AccountExposure(account, account.starting_capital
                                      + (realised.get(pk) or Decimal(0)),
                                      "starting capital + realised PnL", None)
    for account_id, symbol, side, quantity, entry, mark, mark_at in Position.objects.filter(
            strategy__account_id__in=accounts, state__in=PositionState.active()).values_list(
            "strategy__account_id", "symbol", "side", "quantity", "entry_price", "last_price",
            "last_price_at").order_by():
        exposure = out[account_id].symbols.setdefault(symbol, SymbolExposure(symbol))
        sign = 1 if side == PositionSide.LONG else -1
        price = mark if mark is not None else entry
        exposure.positions += 1
        exposure.net_quantity += quantity * sign
        exposure.gross_notional += quantity * price
        exposure.unrealised_pnl += (price - entry) * quantity * sign
        if mark is None or mark_at is None:
            exposure.unmarked += 1
            continue
        if exposure.oldest_mark_at is None or mark_at < exposure.oldest_mark_at:
            exposure.oldest_mark_at = mark_at
        exposure.mark_price = mark
    return [out[pk].as_dict(now) for pk in accounts]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(max(value, 0.0), 1)

