"""Market data: recent candles from each account's exchange into ``execution.Candle``.

The risk monitor scores positions from these rows (volume and volatility
components, latest close). Only closed candles are stored; a repeated refresh
updates the rows it already has (one upsert per symbol).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone

from execution import handlers
from execution.exchanges import exchange_for
from execution.exchanges.base import Exchange
from execution.exchanges.errors import ExchangeError
from execution.exchanges.feeds import timeframe_seconds
from execution.models import Candle, ExchangeAccount

log = logging.getLogger(__name__)

CANDLE_FIELDS = ["open", "high", "low", "close", "volume"]


def candles_refresh(*, account: ExchangeAccount, symbol: str, timeframe: str, limit: int = 100,
                    exchange: Exchange | None = None) -> int:
    """Store the latest closed candles of one symbol; returns how many rows were written."""
    exchange = exchange or exchange_for(account)
    period = timedelta(seconds=timeframe_seconds(timeframe))
    now = timezone.now()
    rows = [Candle(exchange_id=account.exchange_id, symbol=symbol, timeframe=timeframe,
                   open_time=bar.open_time, open=bar.open, high=bar.high, low=bar.low,
                   close=bar.close, volume=bar.volume)
            for bar in exchange.fetch_candles(symbol, timeframe, limit=limit)
            if bar.open_time + period <= now]
    Candle.objects.bulk_create(
        rows, update_conflicts=True, update_fields=CANDLE_FIELDS,
        unique_fields=["exchange_id", "symbol", "timeframe", "open_time"])
    return len(rows)


def candles_refresh_in_use(*, limit: int = 100) -> dict[str, Any]:
    """Refresh the candles of every market a held position is in; errors are logged, not raised.

    Which markets those are is lifecycle's to say (the ``markets_in_use`` hook).
    """
    written, failed = 0, []
    for account, symbol, timeframe in handlers.markets_in_use():
        try:
            written += candles_refresh(account=account, symbol=symbol, timeframe=timeframe,
                                       limit=limit)
        except ExchangeError as exc:
            log.warning("candles of %s %s on %s: %s", symbol, timeframe, account.name, exc)
            failed.append(f"{account.name}:{symbol}:{timeframe}")
    return {"written": written, "failed": failed}
