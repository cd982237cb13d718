"""Fixtures of the risk tests: a frozen clock, a strategy with small windows, candle series."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.models import Candle
from lifecycle.models import Position
from lifecycle.services import position_open
from risk.selectors import timeframe_seconds
from tradingsite.testing.factories import StrategyFactory

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

# 2 recent volumes against the 4 before; the last 2 returns against the last 8 (9 candles).
SMALL_WINDOWS = {"riskMonitoring": {"volumeRecentCandles": 2, "volumeLookbackCandles": 4,
                                    "volatilityShortCandles": 2, "volatilityLongCandles": 8,
                                    "feeRatePercent": 0.05}}
# Closes: six flat returns, then +2 % and −2 % (volatility ratio 2); volumes: the 2 latest
# average 60 against 100 before.
CLOSES = ["100", "100", "100", "100", "100", "100", "100", "102", "99.96"]
VOLUMES = ["100"] * 7 + ["30", "90"]


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def risk_strategy(db, account):
    return StrategyFactory(account=account, name="scalper", timeframe="5m",
                           live_trading=SMALL_WINDOWS)


def add_candles(symbol: str, closes: list[str], volumes: list[str] | None = None, *,
                end: datetime = NOW, timeframe: str = "5m", exchange_id: str = "paper") -> None:
    """Candles whose last one closes at ``end``, oldest first."""
    step = timedelta(seconds=timeframe_seconds(timeframe))
    volumes = volumes or ["100"] * len(closes)
    count = len(closes)
    Candle.objects.bulk_create([
        Candle(exchange_id=exchange_id, symbol=symbol, timeframe=timeframe,
               open_time=end - step * (count - k), open=Decimal(c), high=Decimal(c),
               low=Decimal(c), close=Decimal(c), volume=Decimal(v))
        for k, (c, v) in enumerate(zip(closes, volumes, strict=True))])


@pytest.fixture
def candles() -> Callable[..., None]:
    return add_candles


def open_position(strategy, *, symbol: str = "ETH/USDT:USDT", side: str = "long",
                  entry: str = "100", minutes_ago: float = 60, quantity: str = "2") -> Position:
    return position_open(strategy=strategy, symbol=symbol, side=side, quantity=Decimal(quantity),
                         entry_price=Decimal(entry),
                         opened_at=NOW - timedelta(minutes=minutes_ago))


@pytest.fixture
def live_events(monkeypatch) -> list[tuple[str, dict]]:
    """Events the risk services broadcast (the transport is tested in test_live.py)."""
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr("risk.services.broadcast", lambda event, payload: sent.append(
        (event, payload)))
    monkeypatch.setattr("risk.services.broadcast_many", sent.extend)
    return sent
