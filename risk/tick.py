"""One risk tick's inputs, assembled: held positions, their candles, prices moved, scored.

``tick_assemble`` loads the positions (named rows, ``selectors.TickPosition``) and the
candles they need in two queries, works out each position's price and best/worst
prices since open, and scores them all in one call (``risk.scoring``, pure numpy).
What is written and pushed from a tick is ``risk.services``'.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from lifecycle.models import PositionSide, PositionState
from risk import scoring, selectors
from risk.selectors import MonitoredStrategy, TickPosition

HOLDING = frozenset(PositionState.holding())


@dataclass
class Tick:
    """Everything one check knows about its positions, index-aligned with ``rows``."""

    now: datetime
    rows: list[TickPosition]
    strategies: dict[int, MonitoredStrategy]
    scores: scoring.HealthScores
    minutes_open: np.ndarray
    max_holding: np.ndarray
    quantity: np.ndarray
    entry: np.ndarray
    peak: list[Decimal]
    trough: list[Decimal]
    last_price: list[Decimal | None]
    last_price_at: list[datetime | None]
    price_used: list[Decimal | None]
    missing: list[list[str]]

    @property
    def size(self) -> int:
        return len(self.rows)

    def holding(self) -> np.ndarray:
        return np.array([row.state in HOLDING for row in self.rows], dtype=bool)

    def setting(self, i: int) -> Any:
        return self.strategies[self.rows[i].strategy_id].config


@dataclass
class MarketLayout:
    """Which market row (exchange × symbol × timeframe × windows × staleness) each position reads."""

    position_row: np.ndarray                         # (N,) row of each position
    position_group: np.ndarray                       # (N,) index of its strategy in the tick
    keys: list[tuple[str, str, str, tuple[int, ...], int]]
    by_series: dict[tuple[str, str, str], list[int]]  # candle series → rows fed by it

    @property
    def timeframe_seconds(self) -> np.ndarray:
        return np.array([selectors.timeframe_seconds(k[2]) for k in self.keys], dtype=float)

    @property
    def stale_candles(self) -> np.ndarray:
        return np.array([k[4] for k in self.keys], dtype=float)

    @property
    def windows(self) -> scoring.MarketWindows:
        return scoring.MarketWindows.of([k[3] for k in self.keys])


def market_layout(rows: list[TickPosition], strategies: dict[int, MonitoredStrategy]) -> MarketLayout:
    per_strategy = {}
    for group, (pk, m) in enumerate(strategies.items()):
        risk = m.config.risk_monitoring
        per_strategy[pk] = (group, m.strategy.account.exchange_id, m.strategy.timeframe,
                            scoring.windows_of(risk), risk.stale_data_candles)
    index: dict[tuple, int] = {}
    by_series: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    position_row = np.empty(len(rows), dtype=np.int64)
    position_group = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        group, exchange_id, timeframe, windows, stale = per_strategy[row.strategy_id]
        key = (exchange_id, row.symbol, timeframe, windows, stale)
        if key not in index:
            index[key] = len(index)
            by_series[key[:3]].append(index[key])
        position_row[i], position_group[i] = index[key], group
    return MarketLayout(position_row, position_group, list(index), by_series)


def market_load(layout: MarketLayout, now: datetime
                 ) -> tuple[scoring.MarketMatrix, dict[int, Decimal], np.ndarray]:
    """The candle matrix (stale rows blanked), each row's latest close as stored, and the
    time of that close (epoch seconds)."""
    tf, stale = layout.timeframe_seconds, layout.stale_candles
    windows = layout.windows
    candles, latest_close = candles_load(layout, windows, now)
    market = scoring.build_market_matrix(
        row=candles[0], open_time=candles[1], close=candles[2], volume=candles[3],
        timeframe_seconds=tf, windows=windows)
    now_ts = now.timestamp()
    close_time = np.minimum(market.latest_open + tf, now_ts)
    with np.errstate(invalid="ignore"):
        too_old = close_time < now_ts - stale * tf
    return market.without_rows(too_old), latest_close, close_time


def tick_assemble(monitored: list[MonitoredStrategy], now: datetime) -> Tick:
    """Load positions and candles (two queries), move prices, score in one call."""
    by_id = {m.strategy.pk: m for m in monitored}
    rows = selectors.tick_positions(list(by_id))
    layout = market_layout(rows, by_id)
    market, latest_close, close_time = market_load(layout, now)
    row = layout.position_row
    now_ts = now.timestamp()

    # The price: the latest candle close unless the position knows a newer one; a price
    # older than the staleness limit counts as missing.
    tf = layout.timeframe_seconds[row]
    own_price = floats(r.last_price for r in rows)
    own_time = floats(r.last_price_at.timestamp() if r.last_price_at else None
                       for r in rows)
    candle_price, candle_time = market.closes[row, -1], close_time[row]
    with np.errstate(invalid="ignore"):
        use_candle = np.isfinite(candle_price) & ~(own_time > candle_time)
        own_fresh = np.isfinite(own_price) & (own_time >= now_ts - layout.stale_candles[row] * tf)
    price = np.where(use_candle, candle_price, np.where(own_fresh, own_price, np.nan))

    # Best and worst prices since open: every candle closed since, not only the last one.
    opened = floats(r.opened_at.timestamp() for r in rows)
    highest, lowest = scoring.price_extremes(
        market, row, scoring.candles_closed_since(opened, market.latest_open[row], tf))
    new_peak = np.fmax(np.fmax(floats(r.peak_price for r in rows), highest), price)
    new_trough = np.fmin(np.fmin(floats(r.trough_price for r in rows), lowest), price)

    configs = [m.config for m in by_id.values()]
    group = layout.position_group
    max_holding = np.array([c.lifecycle.max_holding_time_minutes for c in configs],
                           dtype=float)[group]
    minutes_open = (now_ts - opened) / 60.0
    entry = floats(r.entry_price for r in rows)
    side = np.array([1.0 if r.side == PositionSide.LONG else -1.0 for r in rows])
    scores = scoring.score_positions(
        scoring.PositionArrays(side=side, entry_price=entry, peak_price=new_peak,
                               trough_price=new_trough, price=price, minutes_open=minutes_open,
                               max_holding_minutes=max_holding, market_row=row),
        market,
        scoring.ScoringParams.stack([scoring.params_from_config(c.risk_monitoring)
                                     for c in configs], group))

    last_price = [latest_close[r] if fresh else stored.last_price
                  for r, fresh, stored in zip(row.tolist(), use_candle.tolist(), rows, strict=True)]
    last_price_at = [datetime.fromtimestamp(t, tz=UTC) if fresh else stored.last_price_at
                     for t, fresh, stored in zip(candle_time.tolist(), use_candle.tolist(), rows,
                                                 strict=True)]
    return Tick(
        now=now, rows=rows, strategies=by_id, scores=scores, minutes_open=minutes_open,
        max_holding=max_holding, quantity=floats(r.quantity for r in rows), entry=entry,
        peak=[extreme_moved(r.peak_price, v, up=True) for r, v in zip(rows, new_peak, strict=True)],
        trough=[extreme_moved(r.trough_price, v, up=False)
                for r, v in zip(rows, new_trough, strict=True)],
        last_price=last_price, last_price_at=last_price_at,
        price_used=[p if known else None for p, known in
                    zip(last_price, np.isfinite(price).tolist(), strict=True)],
        missing=scores.missing_lists())


def candles_load(layout: MarketLayout, windows: scoring.MarketWindows, now: datetime
                  ) -> tuple[tuple[np.ndarray, ...], dict[int, Decimal]]:
    """The candles every market row needs, in one query, as flat arrays; and each row's
    latest close as stored (Decimal)."""
    need = np.maximum(windows.volume_recent + windows.volume_lookback,
                      windows.volatility_long + 1)
    tf, stale = layout.timeframe_seconds, layout.stale_candles
    wanted: dict[tuple[str, str], tuple[set[str], datetime]] = {}
    for r, (exchange_id, symbol, timeframe, _, _) in enumerate(layout.keys):
        since = now - timedelta(seconds=float((need[r] + stale[r] + 1) * tf[r]))
        symbols, earliest = wanted.get((exchange_id, timeframe), (set(), since))
        symbols.add(symbol)
        wanted[(exchange_id, timeframe)] = (symbols, min(earliest, since))
    row_of, open_ts, close, volume = [], [], [], []
    latest: dict[int, tuple[datetime, Decimal]] = {}
    for exchange_id, symbol, timeframe, open_time, close_price, vol in \
            selectors.recent_candles(wanted):
        for r in layout.by_series.get((exchange_id, symbol, timeframe), ()):
            row_of.append(r)
            open_ts.append(open_time.timestamp())
            close.append(float(close_price))
            volume.append(float(vol))
            if r not in latest or open_time > latest[r][0]:
                latest[r] = (open_time, close_price)
    arrays = (np.array(row_of, dtype=np.int64), np.array(open_ts, dtype=float),
              np.array(close, dtype=float), np.array(volume, dtype=float))
    return arrays, {r: price for r, (_, price) in latest.items()}


def floats(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def extreme_moved(stored: Decimal, candidate: float, *, up: bool) -> Decimal:
    """The stored extreme, or the candidate price when it goes beyond it.

    Candle prices round-trip through float exactly up to 15 significant digits.
    """
    if not np.isfinite(candidate):
        return stored
    beyond = candidate > float(stored) if up else candidate < float(stored)
    return Decimal(str(float(candidate))) if beyond else stored
