"""Health score of open positions: five components in 0–100 and their weighted sum.

Pure numpy, no Django: the risk check turns a tick's positions and candles into
arrays once, then scores every position in one vectorised call.

Market data
-----------
Candles arrive as a right-aligned matrix with one row per *market row* (an exchange ×
symbol × timeframe series with its window lengths): column ``T-1`` holds the row's
latest candle, each column to the left is one timeframe older, NaN marks a candle
that is not stored. Each position points at its row (``-1``: no market data).

Components (each clipped to 0–100)
----------------------------------
time at risk    ``100 · (1 − minutes_open / max_holding_minutes)``
drawdown        adverse move from the best price since open, in % of that price:
                long  ``dd = (peak − price) / peak · 100`` with ``peak = max(peak, price)``,
                short ``dd = (price − trough) / trough · 100`` with ``trough = min(trough, price)``;
                ``100 · (1 − dd / drawdown_limit_percent)``
volume          ``ratio = mean volume of the last volume_recent_candles candles /
                mean volume of the volume_lookback_candles candles before them``;
                ``100 · min(ratio, 1)`` — at or above the average 100, a thin market low
                (baseline 0: ratio 1 if there is recent volume, else 0)
volatility      simple returns ``r_t = c_t / c_(t−1) − 1``; ``σ_s`` = population standard
                deviation of the last volatility_short_candles returns, ``σ_l`` of the
                last volatility_long_candles returns (the baseline includes the recent
                ones); ``ratio = σ_s / σ_l`` (1 when both are 0);
                ``100 · (spike − ratio) / (spike − 1)`` with ``spike = volatility_spike_ratio``
                — calm or usual volatility 100, a spike of ``spike`` × the baseline 0
profitability   unrealised PnL after fees, ``pnl% = side · (price / entry − 1) · 100 −
                2 · fee_rate_percent`` (the fee paid on entry and on exit);
                ``100 · (pnl% + loss_limit_percent) / (loss_limit_percent + profit_target_percent)``
                — a loss of loss_limit_percent scores 0, a profit of profit_target_percent 100

``health = Σ weight_i · component_i`` (weights ≥ 0 summing to 1), rounded to 2 decimals,
as are the stored components. ``danger`` is CRITICAL when ``health < health_score_threshold``,
WARNING when ``health < warning_score_threshold``, else SAFE; the rounded score is
compared, so a stored score and its level always agree.

Missing data
------------
A component whose inputs are missing or not finite scores ``missing_data_score``
(neutral, 50 by default) and is listed in ``missing``: no price or a non-positive one
(drawdown, profitability), fewer than half (rounded up, at least 1) of a volume
window's candles (volume), fewer than half (rounded up, at least 2) of a volatility
window's returns (volatility), no holding limit (time at risk). ``data_complete`` is
then False and ``confidence`` is the weight share of the components computed from
data. NaN and inf never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

COMPONENTS: tuple[str, ...] = ("time_at_risk", "drawdown", "volume", "volatility", "profitability")
TIME, DRAWDOWN, VOLUME, VOLATILITY, PROFITABILITY = range(5)

SAFE, WARNING, CRITICAL = 0, 1, 2
LEVEL_NAMES = np.array(["SAFE", "WARNING", "CRITICAL"])

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


# --- parameters -------------------------------------------------------------------

@dataclass(frozen=True)
class ScoringParams:
    """Per-position parameters: each field a scalar or an array of shape (N,).

    ``weights`` is ``(5,)`` or ``(N, 5)`` in the order of ``COMPONENTS``.
    """

    weights: ArrayLike = (0.20, 0.30, 0.20, 0.15, 0.15)
    drawdown_limit_percent: ArrayLike = 5.0
    loss_limit_percent: ArrayLike = 3.0
    profit_target_percent: ArrayLike = 3.0
    fee_rate_percent: ArrayLike = 0.055
    volatility_spike_ratio: ArrayLike = 3.0
    missing_data_score: ArrayLike = 50.0
    health_score_threshold: ArrayLike = 30.0
    warning_score_threshold: ArrayLike = 60.0

    @classmethod
    def stack(cls, per_group: list[ScoringParams], group: ArrayLike) -> ScoringParams:
        """Per-position params from one ``ScoringParams`` per group (e.g. per strategy)."""
        index = np.asarray(group, dtype=np.int64)
        values = {f.name: np.asarray([np.asarray(getattr(p, f.name), dtype=float)
                                      for p in per_group])[index] for f in fields(cls)}
        return cls(**values)

    def validated_weights(self) -> FloatArray:
        weights = np.asarray(self.weights, dtype=float)
        if weights.shape[-1] != len(COMPONENTS):
            raise ValueError(f"weights: expected {len(COMPONENTS)} values, got shape {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("weights must be finite and non-negative")
        if np.any(np.abs(weights.sum(axis=-1) - 1.0) > 1e-6):
            raise ValueError("weights must sum to 1")
        return weights


@dataclass(frozen=True)
class MarketWindows:
    """Window lengths in candles, per market row (arrays of shape (R,))."""

    volume_recent: IntArray
    volume_lookback: IntArray
    volatility_short: IntArray
    volatility_long: IntArray

    @classmethod
    def of(cls, rows: list[tuple[int, int, int, int]]) -> MarketWindows:
        """From ``(volume_recent, volume_lookback, volatility_short, volatility_long)`` per row."""
        table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        return cls(*(table[:, i] for i in range(4)))

    def width(self) -> int:
        """Candles a row needs: both volume windows, or the long volatility window + 1."""
        if self.volume_recent.size == 0:
            return 1
        return int(max((self.volume_recent + self.volume_lookback).max(),
                       (self.volatility_long + 1).max()))


@dataclass(frozen=True)
class MarketMatrix:
    """Right-aligned candle matrices ``(R, T)``: column ``T-1`` is each row's latest candle."""

    closes: FloatArray
    volumes: FloatArray
    windows: MarketWindows
    latest_open: FloatArray  # (R,) open time (epoch seconds) of each row's latest candle; NaN: none

    @property
    def n_rows(self) -> int:
        return self.closes.shape[0]

    def without_rows(self, rows: NDArray[np.bool_]) -> MarketMatrix:
        """The same matrix with ``rows`` blanked (stale data counts as missing)."""
        closes, volumes = self.closes.copy(), self.volumes.copy()
        closes[rows] = np.nan
        volumes[rows] = np.nan
        return MarketMatrix(closes, volumes, self.windows, self.latest_open)


@dataclass(frozen=True)
class PositionArrays:
    """The positions of one tick; every field has shape (N,)."""

    side: FloatArray              # +1 long, −1 short
    entry_price: FloatArray
    peak_price: FloatArray        # highest price since open
    trough_price: FloatArray      # lowest price since open
    price: FloatArray             # current price; NaN when unknown
    minutes_open: FloatArray
    max_holding_minutes: FloatArray
    market_row: IntArray          # row in the MarketMatrix; −1 when the symbol has no candles

    def __len__(self) -> int:
        return int(np.asarray(self.side).shape[0])


@dataclass(frozen=True)
class MarketFeatures:
    """Per market row: the ratios the volume and volatility components score (NaN: missing)."""

    volume_ratio: FloatArray
    volatility_ratio: FloatArray


@dataclass(frozen=True)
class HealthScores:
    components: FloatArray          # (N, 5), rounded to 2 decimals
    score: FloatArray               # (N,), rounded to 2 decimals
    level: NDArray[np.int8]         # (N,) SAFE / WARNING / CRITICAL codes
    missing: NDArray[np.bool_]      # (N, 5) component scored neutral for lack of data
    confidence: FloatArray          # (N,) weight share of components computed from data
    pnl_percent: FloatArray         # (N,) unrealised PnL % after fees; NaN without a price

    @property
    def data_complete(self) -> NDArray[np.bool_]:
        return ~self.missing.any(axis=1)

    def level_names(self) -> NDArray[np.str_]:
        return LEVEL_NAMES[self.level]

    def missing_names(self, i: int) -> list[str]:
        return [name for name, gone in zip(COMPONENTS, self.missing[i], strict=True) if gone]

    def missing_lists(self) -> list[list[str]]:
        """``missing_names`` of every position (one lookup per position, not a loop over 5)."""
        codes = (self.missing * (1 << np.arange(len(COMPONENTS)))).sum(axis=1).tolist()
        names = [[name for bit, name in enumerate(COMPONENTS) if code >> bit & 1]
                 for code in range(1 << len(COMPONENTS))]
        return [list(names[code]) for code in codes]


# --- market matrix ------------------------------------------------------------------

def build_market_matrix(*, row: ArrayLike, open_time: ArrayLike, close: ArrayLike,
                        volume: ArrayLike, timeframe_seconds: ArrayLike,
                        windows: MarketWindows) -> MarketMatrix:
    """Scatter candles (flat arrays, one entry per candle) into right-aligned matrices.

    ``row`` is each candle's market row, ``open_time`` its open time in epoch seconds;
    ``timeframe_seconds`` has one entry per row. A candle's column is set by its age
    relative to the row's latest candle, so gaps in the data stay NaN.
    """
    n_rows = int(np.asarray(timeframe_seconds).shape[0])
    width = windows.width()
    row = np.asarray(row, dtype=np.int64)
    open_time = np.asarray(open_time, dtype=float)
    tf = np.asarray(timeframe_seconds, dtype=float)
    latest = np.full(n_rows, -np.inf)
    np.maximum.at(latest, row, open_time)
    closes = np.full((n_rows, width), np.nan)
    volumes = np.full((n_rows, width), np.nan)
    if row.size:
        age = np.rint((latest[row] - open_time) / tf[row]).astype(np.int64)
        keep = (age >= 0) & (age < width)
        closes[row[keep], width - 1 - age[keep]] = np.asarray(close, dtype=float)[keep]
        volumes[row[keep], width - 1 - age[keep]] = np.asarray(volume, dtype=float)[keep]
    latest[~np.isfinite(latest)] = np.nan
    return MarketMatrix(closes, volumes, windows, latest)


def _window(width: int, length: IntArray, offset: IntArray | int = 0) -> NDArray[np.bool_]:
    """(R, width) mask of the columns whose age (0 = latest) is in [offset, offset + length)."""
    age = np.arange(width - 1, -1, -1)
    start = np.asarray(offset)[..., None] if np.ndim(offset) else offset
    return (age >= start) & (age < start + length[:, None])


def _min_count(length: IntArray, floor: int) -> IntArray:
    return np.maximum(floor, -(-length // 2))


def market_features(market: MarketMatrix) -> MarketFeatures:
    """Volume and volatility ratios of every market row, from its candle matrix."""
    w = market.windows
    width = market.closes.shape[1]
    with np.errstate(all="ignore"):
        vol = market.volumes
        present = np.isfinite(vol) & (vol >= 0)
        recent = _window(width, w.volume_recent) & present
        base = _window(width, w.volume_lookback, w.volume_recent) & present
        recent_n, base_n = recent.sum(axis=1), base.sum(axis=1)
        recent_mean = np.where(recent, vol, 0.0).sum(axis=1) / recent_n
        base_mean = np.where(base, vol, 0.0).sum(axis=1) / base_n
        volume_ratio = np.where(base_mean > 0, recent_mean / base_mean,
                                np.where(recent_mean > 0, 1.0, 0.0))
        enough = (recent_n >= _min_count(w.volume_recent, 1)) & (
            base_n >= _min_count(w.volume_lookback, 1))
        volume_ratio = np.where(enough & ~np.isnan(volume_ratio), volume_ratio, np.nan)

        closes = np.where(market.closes > 0, market.closes, np.nan)
        returns = closes[:, 1:] / closes[:, :-1] - 1.0
        short_std, short_n = _masked_std(returns, _window(width - 1, w.volatility_short))
        long_std, long_n = _masked_std(returns, _window(width - 1, w.volatility_long))
        volatility_ratio = np.where(long_std > 0, short_std / long_std,
                                    np.where(short_std > 0, np.inf, 1.0))
        enough = (short_n >= _min_count(w.volatility_short, 2)) & (
            long_n >= _min_count(w.volatility_long, 2))
        volatility_ratio = np.where(enough & ~np.isnan(volatility_ratio), volatility_ratio,
                                    np.nan)
    return MarketFeatures(volume_ratio, volatility_ratio)


def _masked_std(values: FloatArray, window: NDArray[np.bool_]) -> tuple[FloatArray, IntArray]:
    """Population standard deviation per row over ``window`` ∩ finite values, and the count."""
    mask = window & np.isfinite(values)
    n = mask.sum(axis=1)
    mean = np.where(mask, values, 0.0).sum(axis=1) / n
    dev = np.where(mask, values - mean[:, None], 0.0)
    return np.sqrt((dev * dev).sum(axis=1) / n), n


def candles_closed_since(since: ArrayLike, latest_open: ArrayLike,
                         timeframe_seconds: ArrayLike) -> IntArray:
    """How many of a row's latest candles closed at or after ``since`` (epoch seconds)."""
    with np.errstate(all="ignore"):
        spans = (np.asarray(latest_open, float) + np.asarray(timeframe_seconds, float)
                 - np.asarray(since, float)) / np.asarray(timeframe_seconds, float)
        count = np.floor(spans) + 1
    return np.where(np.isfinite(count) & (count > 0), count, 0).astype(np.int64)


def price_extremes(market: MarketMatrix, row: ArrayLike, count: ArrayLike
                   ) -> tuple[FloatArray, FloatArray]:
    """Highest and lowest close among each position's row's latest ``count`` candles.

    One pass over the (small) matrix — running max/min from the latest candle back —
    then one gather per position. NaN where there is no such candle.
    """
    row = np.asarray(row, dtype=np.int64)
    width = market.closes.shape[1]
    take = np.clip(np.asarray(count, dtype=np.int64), 0, width)
    valid = (row >= 0) & (row < market.n_rows) & (take > 0)
    if not valid.any():
        return np.full(row.shape, np.nan), np.full(row.shape, np.nan)
    newest_first = market.closes[:, ::-1]
    highest = np.fmax.accumulate(newest_first, axis=1)
    lowest = np.fmin.accumulate(newest_first, axis=1)
    r, k = np.where(valid, row, 0), np.where(valid, take - 1, 0)
    return np.where(valid, highest[r, k], np.nan), np.where(valid, lowest[r, k], np.nan)


# --- scoring ------------------------------------------------------------------------

def pnl_percent(side: ArrayLike, entry_price: ArrayLike, price: ArrayLike,
                fee_rate_percent: ArrayLike) -> FloatArray:
    """Unrealised PnL in % of the entry notional after the entry and exit fee."""
    with np.errstate(all="ignore"):
        direction = np.where(np.asarray(side, float) >= 0, 1.0, -1.0)
        return (direction * (np.asarray(price, float) / np.asarray(entry_price, float) - 1.0)
                * 100.0 - 2.0 * np.asarray(fee_rate_percent, float))


def _ramp(value: FloatArray) -> FloatArray:
    """Map a 0..1 fraction onto a 0..100 score, NaN kept (it marks missing data)."""
    return np.clip(value, 0.0, 1.0) * 100.0


def score_positions(positions: PositionArrays, market: MarketMatrix,
                    params: ScoringParams) -> HealthScores:
    """Score every position of the tick in one vectorised pass."""
    features = market_features(market)
    n = len(positions)
    with np.errstate(all="ignore"):
        row = np.asarray(positions.market_row, dtype=np.int64)
        has_row = (row >= 0) & (row < market.n_rows)
        safe_row = np.where(has_row, row, 0)
        volume_ratio = (np.where(has_row, features.volume_ratio[safe_row], np.nan)
                        if market.n_rows else np.full(n, np.nan))
        volatility_ratio = (np.where(has_row, features.volatility_ratio[safe_row], np.nan)
                            if market.n_rows else np.full(n, np.nan))
        spike = np.asarray(params.volatility_spike_ratio, dtype=float)
        volume_raw = _ramp(volume_ratio)
        volatility_raw = _ramp((spike - volatility_ratio) / (spike - 1.0))
    return _score(positions, volume_raw, volatility_raw, params)


def score_on_price(positions: PositionArrays, volume_score: ArrayLike,
                   volatility_score: ArrayLike, params: ScoringParams) -> HealthScores:
    """Score on a fresh price between candle checks: the price-driven components (time at
    risk, drawdown, profitability) are computed now, volume and volatility are carried
    from the last candle check (NaN: missing, scored neutral as always)."""
    return _score(positions, np.asarray(volume_score, dtype=float),
                  np.asarray(volatility_score, dtype=float), params)


def _score(positions: PositionArrays, volume_raw: FloatArray, volatility_raw: FloatArray,
           params: ScoringParams) -> HealthScores:
    """The price-driven components, then the weighted sum and the danger level."""
    weights = params.validated_weights()
    p = {f.name: np.asarray(getattr(params, f.name), dtype=float) for f in fields(params)
         if f.name != "weights"}
    n = len(positions)
    with np.errstate(all="ignore"):
        side = np.where(np.asarray(positions.side, float) >= 0, 1.0, -1.0)
        is_long = side > 0
        entry = np.asarray(positions.entry_price, float)
        price = np.asarray(positions.price, float)
        price = np.where(np.isfinite(price) & (price > 0), price, np.nan)
        entry = np.where(np.isfinite(entry) & (entry > 0), entry, np.nan)

        minutes = np.asarray(positions.minutes_open, float)
        limit = np.asarray(positions.max_holding_minutes, float)
        time_raw = np.where(limit > 0, _ramp(1.0 - np.maximum(minutes, 0.0) / limit), np.nan)

        best = np.where(is_long, np.fmax(np.asarray(positions.peak_price, float), price),
                        np.fmin(np.asarray(positions.trough_price, float), price))
        best = np.where(best > 0, best, price)
        adverse = np.where(is_long, best - price, price - best) / best * 100.0
        drawdown_raw = _ramp(1.0 - adverse / p["drawdown_limit_percent"])

        pnl = pnl_percent(side, entry, price, p["fee_rate_percent"])
        loss, target = p["loss_limit_percent"], p["profit_target_percent"]
        profitability_raw = _ramp((pnl + loss) / (loss + target))

        raw = np.stack([np.broadcast_to(c, (n,)) for c in
                        (time_raw, drawdown_raw, volume_raw, volatility_raw, profitability_raw)],
                       axis=1)
        missing = ~np.isfinite(raw)
        neutral = np.broadcast_to(np.clip(p["missing_data_score"], 0.0, 100.0), (n,))
        components = np.where(missing, neutral[:, None], raw)
        score = np.round(np.clip((components * weights).sum(axis=1), 0.0, 100.0), 2)
        confidence = np.round((np.where(missing, 0.0, 1.0) * weights).sum(axis=1), 6)
    level = danger_levels(score, p["health_score_threshold"], p["warning_score_threshold"])
    return HealthScores(components=np.round(components, 2), score=score, level=level,
                        missing=missing, confidence=np.broadcast_to(confidence, (n,)).copy(),
                        pnl_percent=np.broadcast_to(pnl, (n,)).copy())


def danger_levels(score: ArrayLike, health_score_threshold: ArrayLike = 30.0,
                  warning_score_threshold: ArrayLike = 60.0) -> NDArray[np.int8]:
    """CRITICAL below the health threshold, WARNING below the warning threshold, else SAFE."""
    score = np.asarray(score, dtype=float)
    return np.where(score < health_score_threshold, CRITICAL,
                    np.where(score < warning_score_threshold, WARNING, SAFE)).astype(np.int8)


def danger_level(score: float, health_score_threshold: float = 30.0,
                 warning_score_threshold: float = 60.0) -> str:
    """The level name of one score."""
    return str(LEVEL_NAMES[danger_levels(score, health_score_threshold,
                                         warning_score_threshold)])


def params_from_config(risk: Any) -> ScoringParams:
    """``ScoringParams`` from a ``RiskMonitoringConfig`` (duck-typed: no Django import)."""
    w = risk.weights
    return ScoringParams(
        weights=(w.time_at_risk, w.drawdown, w.volume, w.volatility, w.profitability),
        drawdown_limit_percent=risk.drawdown_limit_percent,
        loss_limit_percent=risk.loss_limit_percent,
        profit_target_percent=risk.profit_target_percent,
        fee_rate_percent=risk.fee_rate_percent,
        volatility_spike_ratio=risk.volatility_spike_ratio,
        missing_data_score=risk.missing_data_score,
        health_score_threshold=risk.health_score_threshold,
        warning_score_threshold=risk.warning_score_threshold,
    )


def windows_of(risk: Any) -> tuple[int, int, int, int]:
    """The market windows a ``RiskMonitoringConfig`` asks for."""
    return (risk.volume_recent_candles, risk.volume_lookback_candles,
            risk.volatility_short_candles, risk.volatility_long_candles)
