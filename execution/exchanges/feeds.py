"""Market feeds of the paper exchange: where its prices come from.

- ``CandleReplayFeed``: recorded candles replayed on the clock; bar ``i`` of the
  file is the market during ``[start + i × step, start + (i+1) × step)``, looping
  when the file ends. Inside a bar the price walks open → first extreme → second
  extreme → close (low first on an up bar, high first on a down bar), so a limit
  order is crossed when the recorded range reaches it. At bar boundaries the price
  equals the previous close, as in the demo seed.
- ``RandomWalkFeed``: a seeded geometric random walk, one step every
  ``step_seconds`` after its anchor: the same seed gives the same prices.
- ``ManualFeed``: prices set by hand (tests, demos): ``set_price``.

No Django here: callers pass times and file paths.
"""

from __future__ import annotations

import csv
import math
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import numpy as np

TIMEFRAME_SECONDS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
                     "2h": 7200, "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400}


def timeframe_seconds(timeframe: str) -> int:
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; use one of "
                         f"{', '.join(TIMEFRAME_SECONDS)}") from None


@dataclass(frozen=True)
class Bar:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class CandleFile:
    """A ``timestamp_ms,open,high,low,close,volume`` CSV as float arrays (oldest first)."""

    ohlcv: np.ndarray  # shape (n, 5)

    def __len__(self) -> int:
        return len(self.ohlcv)


@lru_cache(maxsize=16)
def load_candle_file(path: str) -> CandleFile:
    """Read once per process; the replay only indexes into the arrays."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = [[float(row[k]) for k in ("open", "high", "low", "close", "volume")]
                for row in csv.DictReader(fh)]
    if not rows:
        raise ValueError(f"{path}: no candles")
    return CandleFile(np.array(rows, dtype=float))


def symbol_from_file_name(name: str) -> str:
    """``binance-futures_XRP-USDT_5m.csv`` → ``XRP/USDT:USDT``; ``binance_ETH-BTC_5m.csv`` → ``ETH/BTC``."""
    source, pair, _tf = Path(name).stem.split("_")
    base, quote = pair.split("-")
    return f"{base}/{quote}:{quote}" if "futures" in source else f"{base}/{quote}"


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


class Feed(ABC):
    """Mid price and candles of one symbol on the clock."""

    @abstractmethod
    def price(self, at: datetime) -> Decimal: ...

    @abstractmethod
    def candles(self, timeframe: str, until: datetime, limit: int) -> list[Bar]: ...


class CandleReplayFeed(Feed):
    def __init__(self, data: CandleFile, *, start: datetime, timeframe: str = "5m",
                 loop: bool = True):
        self.data = data
        self.start = start
        self.step = timeframe_seconds(timeframe)
        self.loop = loop

    def _index(self, seconds: float) -> int:
        i = math.floor(seconds / self.step)
        if self.loop:
            return i % len(self.data)
        return min(max(i, 0), len(self.data) - 1)

    def price(self, at: datetime) -> Decimal:
        seconds = (at - self.start).total_seconds()
        o, h, lo, c, _v = self.data.ohlcv[self._index(seconds)]
        fraction = (seconds / self.step) - math.floor(seconds / self.step)
        first, second = (lo, h) if c >= o else (h, lo)
        path = (o, first, second, c)
        leg = min(int(fraction * 3), 2)
        within = fraction * 3 - leg
        return _dec(round(path[leg] + (path[leg + 1] - path[leg]) * within, 10))

    def candles(self, timeframe: str, until: datetime, limit: int) -> list[Bar]:
        """Closed bars only: a bar still in progress would reveal its future range."""
        factor, rem = divmod(timeframe_seconds(timeframe), self.step)
        if rem or factor < 1:
            raise ValueError(f"timeframe {timeframe} is not a multiple of the replayed "
                             f"{self.step // 60}m bars")
        period = self.step * factor
        current = math.floor((until - self.start).total_seconds() / period)
        bars = []
        for k in range(current - limit, current):
            rows = np.array([self.data.ohlcv[self._index((k * factor + j) * self.step)]
                             for j in range(factor)])
            bars.append(Bar(self.start + timedelta(seconds=k * period), _dec(rows[0, 0]),
                            _dec(rows[:, 1].max()), _dec(rows[:, 2].min()), _dec(rows[-1, 3]),
                            _dec(round(rows[:, 4].sum(), 10))))
        return bars


class RandomWalkFeed(Feed):
    """Geometric random walk: ``price_n = start × exp(volatility × Σ z_k)``, z ~ N(0, 1)."""

    BLOCK = 65536

    def __init__(self, *, symbol: str, seed: int, start_price: Decimal, anchor: datetime,
                 volatility_percent: float = 0.05, step_seconds: float = 5.0,
                 volume_per_step: float = 100.0):
        self.start_price = float(start_price)
        self.anchor = anchor
        self.sigma = volatility_percent / 100
        self.step = step_seconds
        self.volume_per_step = volume_per_step
        self._rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
        self._walk = np.zeros(1)

    def _log_returns_upto(self, n: int) -> np.ndarray:
        while len(self._walk) <= n:
            z = self._rng.standard_normal(self.BLOCK)
            self._walk = np.concatenate([self._walk, self._walk[-1] + np.cumsum(z)])
        return self._walk

    def _step_index(self, at: datetime) -> int:
        return max(0, math.floor((at - self.anchor).total_seconds() / self.step))

    def _price_at_step(self, n: int) -> float:
        return self.start_price * math.exp(self.sigma * self._log_returns_upto(n)[n])

    def price(self, at: datetime) -> Decimal:
        return _dec(round(self._price_at_step(self._step_index(at)), 10))

    def candles(self, timeframe: str, until: datetime, limit: int) -> list[Bar]:
        period = timeframe_seconds(timeframe)
        current = math.floor((until - self.anchor).total_seconds() / period)
        per_bar = max(1, round(period / self.step))
        bars = []
        for k in range(current - limit, current):
            first = max(0, k * per_bar)
            walk = self._log_returns_upto(first + per_bar)[first:first + per_bar + 1]
            prices = self.start_price * np.exp(self.sigma * walk)
            bars.append(Bar(self.anchor + timedelta(seconds=k * period), _dec(prices[0]),
                            _dec(prices.max()), _dec(prices.min()), _dec(prices[-1]),
                            _dec(self.volume_per_step * per_bar)))
        return bars


class ManualFeed(Feed):
    """A price set by hand; candles are flat at that price."""

    def __init__(self, price: Decimal):
        self._price = Decimal(price)

    def set_price(self, price: Decimal) -> None:
        self._price = Decimal(price)

    def price(self, at: datetime) -> Decimal:
        return self._price

    def candles(self, timeframe: str, until: datetime, limit: int) -> list[Bar]:
        period = timeframe_seconds(timeframe)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        current = math.floor((until - epoch).total_seconds() / period)
        p = self._price
        return [Bar(epoch + timedelta(seconds=k * period), p, p, p, p, Decimal("0"))
                for k in range(current - limit, current)]
