"""Performance metrics over closed trades: pure numpy, no Django.

Input is a :class:`TradeSeries` — parallel arrays of the trades of one report in
close order — plus the starting equity and the local day boundaries of the
report window. Every metric is reported with its sample size; a metric that is
undefined on its input (no trades, no losses, zero variance…) is ``None`` with a
reason, never ``inf`` or ``nan``, so a report is always valid JSON.

Definitions (PnL is realised and net of fees):

- **trades / wins / losses / breakeven**: number of trades with PnL > 0, < 0, = 0.
- **win rate** = wins ÷ trades (breakeven trades count as trades, not wins).
- **gross profit** = Σ PnL of wins; **gross loss** = −Σ PnL of losses (≥ 0).
- **profit factor** = gross profit ÷ gross loss; undefined without losses.
- **expectancy** = mean PnL per trade (= win rate × average win − loss rate × |average loss|).
- **average win / average loss** = mean PnL of the wins / of the losses (the latter < 0).
- **payoff ratio** = average win ÷ |average loss|.
- **total / average PnL** = Σ PnL and mean PnL; **average PnL %** = mean of the trades'
  own PnL % (of entry notional); **return %** = total PnL ÷ starting equity × 100.
- **fees** = Σ fees paid.
- **longest win / loss streak**: most consecutive wins / losses in close order; a
  breakeven trade ends both kinds of streak.
- **holding time**: mean, median and max of (closed − opened) in seconds.
- **equity** after trade *i* = starting equity + Σ PnL of trades 1…i (realised equity).
- **max drawdown (trade by trade)** = min over *i* of equity_i ÷ peak_i − 1, where
  peak_i is the highest equity so far, the starting equity included (≤ 0, a fraction);
  **max drawdown amount** = min over *i* of equity_i − peak_i (≤ 0, in quote currency).
  Each comes with the time of its peak and of its trough.
- **daily equity** E_d = equity at the end of local calendar day *d* of the window;
  **daily return** r_d = E_d ÷ E_{d−1} − 1 with E_{−1} the starting equity. Days
  without trades are zero-return days. **Max daily drawdown** is the max drawdown of
  the daily equity (the same as empyrical's ``max_drawdown`` of the daily returns).
- **Sharpe** = mean(r − rf) ÷ std(r − rf, ddof=1) × √A, **Sortino** =
  mean(r − rf) × A ÷ (√mean(min(r − rf, 0)²) × √A) — the definitions of empyrical's
  ``sharpe_ratio`` and ``sortino_ratio``, with A = annualisation days (365: crypto
  trades every day) and rf the daily risk-free rate. Undefined on fewer than two days
  and when the denominator is zero (empyrical returns ``inf``/``nan`` there).
- **CAGR** = (E_last ÷ E_{−1})^(A ÷ days) − 1 (empyrical's ``annual_return``);
  **Calmar** = CAGR ÷ |max daily drawdown| (empyrical's ``calmar_ratio``), undefined
  without a drawdown.
- **top / worst trades**: the N winners with the highest PnL / the N losers with the
  lowest (a breakeven or losing trade is never a top trade, a winner never a worst one);
  ties go to the earlier trade.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analytics.periods import from_micros

# One line per metric: the API schema and the command output show these.
METRIC_DEFINITIONS: dict[str, str] = {
    "trades": "Number of closed trades in the report.",
    "wins": "Trades with PnL > 0 (PnL is realised and net of fees).",
    "losses": "Trades with PnL < 0.",
    "breakeven": "Trades with PnL = 0.",
    "win_rate": "wins ÷ trades (breakeven trades count as trades, not wins).",
    "profit_factor": "gross profit ÷ gross loss; null without losses (flag no_losses).",
    "expectancy": "Mean PnL per trade = win rate × average win − loss rate × |average loss|.",
    "average_win": "Mean PnL of the winning trades.",
    "average_loss": "Mean PnL of the losing trades (negative).",
    "payoff_ratio": "average win ÷ |average loss|.",
    "gross_profit": "Σ PnL of the winning trades.",
    "gross_loss": "−Σ PnL of the losing trades (≥ 0).",
    "total_pnl": "Σ PnL of all trades (quote currency).",
    "average_pnl": "Σ PnL ÷ trades (the same as expectancy).",
    "average_pnl_percent": "Mean of the trades' own PnL % of entry notional.",
    "return_percent": "total PnL ÷ equity at the window's start × 100.",
    "fees_paid": "Σ fees of the trades.",
    "longest_win_streak": "Most consecutive winning trades in close order.",
    "longest_loss_streak": "Most consecutive losing trades in close order (breakeven ends a streak).",
    "holding_seconds_mean": "Mean of closed_at − opened_at, in seconds.",
    "holding_seconds_median": "Median of closed_at − opened_at, in seconds.",
    "holding_seconds_max": "Longest closed_at − opened_at, in seconds.",
    "max_drawdown": "min over trades of equity ÷ running peak − 1 (≤ 0); equity = start + Σ PnL.",
    "max_drawdown_amount": "min over trades of equity − running peak (≤ 0, quote currency).",
    "max_daily_drawdown": "Max drawdown of the end-of-day equity (empyrical max_drawdown, ≤ 0).",
    "sharpe_ratio": "mean(r − rf) ÷ std(r − rf, ddof=1) × √365 on daily equity returns r "
                    "(empyrical sharpe_ratio).",
    "sortino_ratio": "mean(r − rf) × 365 ÷ (√mean(min(r − rf, 0)²) × √365) on daily returns "
                     "(empyrical sortino_ratio).",
    "cagr": "(end equity ÷ start equity)^(365 ÷ days) − 1 (empyrical annual_return).",
    "calmar_ratio": "CAGR ÷ |max daily drawdown| (empyrical calmar_ratio).",
}

# Reasons a metric is undefined (its value is then None).
NO_TRADES = "no_trades"
NO_WINS = "no_wins"
NO_LOSSES = "no_losses"
NO_WINS_OR_LOSSES = "no_wins_or_losses"
FEWER_THAN_TWO_DAYS = "fewer_than_two_days"
NO_DAYS = "no_days"
ZERO_VARIANCE = "zero_variance"
NO_DOWNSIDE = "no_downside_days"
NO_DRAWDOWN = "no_drawdown"
NO_STARTING_EQUITY = "no_starting_equity"
EQUITY_DEPLETED = "equity_depleted"
BEYOND_FLOAT_RANGE = "beyond_float_range"  # e.g. a CAGR annualised from one day's 100× growth

# Size of the strided sample that picks the top/worst-N threshold (see extreme_trades).
_TOP_SAMPLE = 4096


@dataclass(frozen=True)
class TradeSeries:
    """The closed trades of one report as parallel arrays, in close order.

    ``closed_at_us`` is µs since the Unix epoch (UTC), non-decreasing; ties are in id
    order. ``fees_total`` and ``pnl_percent_total`` are sums over the same trades (the
    metrics only need their totals, so the database sums them instead of shipping them).
    """

    trade_ids: np.ndarray
    closed_at_us: np.ndarray
    pnl: np.ndarray
    holding_seconds: np.ndarray
    fees_total: float = 0.0
    pnl_percent_total: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.pnl)
        for name in ("trade_ids", "closed_at_us", "holding_seconds"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: expected {n} values, got {len(getattr(self, name))}")
        if n > 1 and not bool(np.all(self.closed_at_us[1:] >= self.closed_at_us[:-1])):
            raise ValueError("closed_at_us: trades must be in close order")

    def __len__(self) -> int:
        return len(self.pnl)

    @classmethod
    def empty(cls) -> TradeSeries:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64),
                   np.empty(0, np.int64))

    @classmethod
    def from_unsorted(cls, trade_ids: np.ndarray, closed_at_us: np.ndarray, pnl: np.ndarray,
                      holding_seconds: np.ndarray, *, fees_total: float = 0.0,
                      pnl_percent_total: float = 0.0) -> TradeSeries:
        """Order arrays by (close time, id); cheap when they already are (the usual case)."""
        trade_ids = np.asarray(trade_ids, dtype=np.int64)
        closed_at_us = np.asarray(closed_at_us, dtype=np.int64)
        if not _in_close_order(closed_at_us, trade_ids):
            order = np.lexsort((trade_ids, closed_at_us))
            trade_ids, closed_at_us = trade_ids[order], closed_at_us[order]
            pnl, holding_seconds = np.asarray(pnl)[order], np.asarray(holding_seconds)[order]
        return cls(trade_ids, closed_at_us, np.asarray(pnl, dtype=np.float64),
                   np.asarray(holding_seconds, dtype=np.int64), float(fees_total),
                   float(pnl_percent_total))


def _in_close_order(closed_at_us: np.ndarray, trade_ids: np.ndarray) -> bool:
    if len(closed_at_us) < 2:
        return True
    if not bool(np.all(closed_at_us[1:] >= closed_at_us[:-1])):
        return False
    ties = np.flatnonzero(closed_at_us[1:] == closed_at_us[:-1])
    return bool(np.all(trade_ids[ties + 1] > trade_ids[ties]))


@dataclass(frozen=True)
class Metric:
    """A value with the number of observations it rests on; ``None`` when undefined."""

    value: float | int | None
    sample_size: int
    undefined_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "sample_size": self.sample_size}
        if self.value is None and self.undefined_reason:
            out["undefined_reason"] = self.undefined_reason
        return out


@dataclass(frozen=True)
class Drawdown(Metric):
    """A max drawdown with the equity and time of its peak and of its trough."""

    peak_at_us: int | None = None
    trough_at_us: int | None = None
    peak_equity: float | None = None
    trough_equity: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out.update(peak_at=_iso(self.peak_at_us), trough_at=_iso(self.trough_at_us),
                   peak_equity=self.peak_equity, trough_equity=self.trough_equity)
        return out


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    return from_micros(micros).isoformat().replace("+00:00", "Z")


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def defined(value: float, sample_size: int, reason: str) -> Metric:
    """A metric from a float that may be inf/nan: non-finite becomes None with ``reason``."""
    finite = _finite(value)
    return Metric(finite, sample_size, None if finite is not None else reason)


# --- trade statistics ------------------------------------------------------------------


@dataclass
class PnlSums:
    """Counts and sums of wins and losses, accumulated over consecutive pieces of PnL."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    gross_profit: float = 0.0
    gross_loss: float = 0.0

    @property
    def breakeven(self) -> int:
        return self.trades - self.wins - self.losses

    @property
    def total(self) -> float:
        return self.gross_profit - self.gross_loss

    def update(self, pnl: np.ndarray, wins: np.ndarray, losses: np.ndarray,
               scratch: np.ndarray | None = None) -> None:
        """Add a piece of PnL; ``wins``/``losses`` are its masks ``pnl > 0``/``pnl < 0``."""
        if len(pnl) == 0:
            return
        self.trades += len(pnl)
        win_count, loss_count = int(np.count_nonzero(wins)), int(np.count_nonzero(losses))
        self.wins += win_count
        self.losses += loss_count
        if win_count:
            self.gross_profit += float(np.maximum(pnl, 0.0, out=scratch).sum())
        if loss_count:
            self.gross_loss -= float(np.minimum(pnl, 0.0, out=scratch).sum())


def pnl_sums(pnl: np.ndarray) -> PnlSums:
    sums = PnlSums()
    sums.update(pnl, pnl > 0, pnl < 0)
    return sums


def win_rate(s: PnlSums) -> Metric:
    """wins ÷ trades."""
    if s.trades == 0:
        return Metric(None, 0, NO_TRADES)
    return Metric(s.wins / s.trades, s.trades)


def profit_factor(s: PnlSums) -> Metric:
    """gross profit ÷ gross loss; undefined (not inf) when there is no loss."""
    if s.trades == 0:
        return Metric(None, 0, NO_TRADES)
    if s.gross_loss == 0:
        return Metric(None, s.trades, NO_LOSSES if s.wins else NO_WINS_OR_LOSSES)
    return Metric(s.gross_profit / s.gross_loss, s.trades)


def expectancy(s: PnlSums) -> Metric:
    """Mean PnL per trade."""
    if s.trades == 0:
        return Metric(None, 0, NO_TRADES)
    return Metric(s.total / s.trades, s.trades)


def average_win(s: PnlSums) -> Metric:
    """Mean PnL of the winning trades."""
    if s.wins == 0:
        return Metric(None, 0, NO_WINS)
    return Metric(s.gross_profit / s.wins, s.wins)


def average_loss(s: PnlSums) -> Metric:
    """Mean PnL of the losing trades (negative)."""
    if s.losses == 0:
        return Metric(None, 0, NO_LOSSES)
    return Metric(-s.gross_loss / s.losses, s.losses)


def payoff_ratio(s: PnlSums) -> Metric:
    """average win ÷ |average loss|."""
    if s.wins == 0 or s.losses == 0:
        reason = NO_WINS_OR_LOSSES if s.wins == s.losses == 0 else (
            NO_WINS if s.wins == 0 else NO_LOSSES)
        return Metric(None, s.wins + s.losses, reason)
    return Metric((s.gross_profit / s.wins) / (s.gross_loss / s.losses), s.wins + s.losses)


@dataclass
class _Run:
    """Longest run of trades without a break, across pieces (``current`` carries over)."""

    longest: int = 0
    current: int = 0

    def update(self, breaks: np.ndarray) -> None:
        at = np.flatnonzero(breaks)
        if len(at) == 0:
            self.current += len(breaks)
            return
        inner = int((at[1:] - at[:-1]).max()) - 1 if len(at) > 1 else 0
        self.longest = max(self.longest, self.current + int(at[0]), inner)
        self.current = len(breaks) - 1 - int(at[-1])

    @property
    def result(self) -> int:
        return max(self.longest, self.current)


@dataclass
class StreakCounter:
    """Longest win and loss streaks in close order; a breakeven trade ends both."""

    wins: _Run = field(default_factory=_Run)
    losses: _Run = field(default_factory=_Run)

    def update(self, wins: np.ndarray, losses: np.ndarray) -> None:
        """Add a piece of trades given its masks ``pnl > 0`` and ``pnl < 0``."""
        self.wins.update(~wins)
        self.losses.update(~losses)


def longest_streaks(pnl: np.ndarray) -> tuple[int, int]:
    """(longest run of wins, longest run of losses) in close order."""
    counter = StreakCounter()
    counter.update(pnl > 0, pnl < 0)
    return counter.wins.result, counter.losses.result


def holding_time(holding_seconds: np.ndarray) -> tuple[Metric, Metric, Metric]:
    """(mean, median, max) holding time in seconds.

    Integer seconds in a range small against the count go through one histogram
    (``bincount``): mean and median then come from the counts, exactly as from the
    values, without a selection over all of them. Otherwise ``np.median``.
    """
    n = len(holding_seconds)
    if n == 0:
        return (Metric(None, 0, NO_TRADES),) * 3
    longest = int(holding_seconds.max())
    counts = None
    if longest <= 4 * n + 65_536:
        try:
            counts = np.bincount(holding_seconds, minlength=longest + 1)
        except ValueError:  # negative values: no histogram
            counts = None
    if counts is None:
        return (Metric(float(holding_seconds.mean()), n),
                Metric(float(np.median(holding_seconds)), n), Metric(longest, n))
    seconds = np.arange(len(counts))
    mean = float(np.dot(counts, seconds)) / n
    rank = np.cumsum(counts)
    lower = int(np.searchsorted(rank, (n - 1) // 2, side="right"))
    upper = int(np.searchsorted(rank, n // 2, side="right"))
    return Metric(mean, n), Metric((lower + upper) / 2, n), Metric(longest, n)


def extreme_trades(pnl: np.ndarray, n: int, *, best: bool) -> np.ndarray:
    """Positions of the ``n`` highest (``best``) or lowest PnL, best first / worst first.

    Exact without sorting everything: the n-th best of a strided sample is a
    threshold that at least n trades reach, so every true top-n trade passes it;
    only the few trades past the threshold are sorted. Ties go to the earlier trade.
    """
    size = len(pnl)
    if n <= 0 or size == 0:
        return np.empty(0, dtype=np.int64)
    if size > _TOP_SAMPLE and n < _TOP_SAMPLE // 8:
        sample = np.sort(pnl[:: size // _TOP_SAMPLE])
        if best:
            candidates = np.flatnonzero(pnl >= sample[len(sample) - n])
        else:
            candidates = np.flatnonzero(pnl <= sample[n - 1])
    else:
        candidates = np.arange(size)
    values = pnl[candidates]
    order = np.lexsort((candidates, -values if best else values))
    return candidates[order[:n]].astype(np.int64)


def winners_and_losers(pnl: np.ndarray, n: int, *, best: bool) -> np.ndarray:
    """The top trades are the ``n`` best winners (PnL > 0), the worst the ``n`` worst losers
    (PnL < 0): a losing trade is never a top trade, and no trade is both."""
    picked = extreme_trades(pnl, n, best=best)
    return picked[pnl[picked] > 0] if best else picked[pnl[picked] < 0]


# --- equity, drawdown and daily returns --------------------------------------------------


class DrawdownTracker:
    """Max drawdown of an equity path fed in consecutive pieces.

    The path starts at ``start_equity`` at ``start_us``, which counts as the first
    peak. Keeps the deepest drawdown as a fraction of the peak and as an amount,
    each with the time and equity of its peak (first reached) and trough (first hit).

    Long pieces are cut into blocks: each block's highest and lowest equity bound the
    drawdowns it can hold, so only the few blocks that could beat the deepest one so
    far are scanned element by element (the same arithmetic, so the same result as
    scanning everything). A piece where too many blocks qualify is scanned whole.
    """

    BLOCK = 512
    MAX_CANDIDATES = 16

    def __init__(self, start_equity: float, start_us: int | None):
        self.start_equity = float(start_equity)
        self.count = 0
        self.peak, self.peak_at = self.start_equity, start_us
        self.fraction = Drawdown(0.0, 0)
        self.amount = Drawdown(0.0, 0)
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, equity: np.ndarray, times_us: np.ndarray) -> None:
        n = len(equity)
        blocks = n // self.BLOCK
        if blocks < 4 or not self._update_by_blocks(equity, times_us, blocks):
            self._update_exact(equity, times_us)
        self.count += n

    def _update_by_blocks(self, equity: np.ndarray, times_us: np.ndarray, blocks: int) -> bool:
        size = blocks * self.BLOCK
        body = equity[:size].reshape(blocks, self.BLOCK)
        highs, lows = body.max(axis=1), body.min(axis=1)
        # The running peak inside block k lies between ``before[k]`` and ``after[k]``.
        before = np.empty(blocks)
        before[0] = self.peak
        np.maximum.accumulate(highs[:-1], out=before[1:])
        np.maximum(before[1:], self.peak, out=before[1:])
        after = np.maximum(before, highs)
        # Block k's deepest amount lies in [lows − after, lows − before].
        deepest = min(self.amount.value, float((lows - before).min()))
        shallow = lows - after
        maybe = (shallow < self.amount.value) & (shallow <= deepest)
        if self.start_equity > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio_a, ratio_b = lows / before - 1.0, lows / after - 1.0
            low, high = np.minimum(ratio_a, ratio_b), np.maximum(ratio_a, ratio_b)
            deepest = min(self.fraction.value, float(high.min()))
            maybe |= (low < self.fraction.value) & (low <= deepest)
        candidates = np.flatnonzero(maybe)
        if len(candidates) > self.MAX_CANDIDATES:
            return False
        start_peak, start_at = self.peak, self.peak_at
        for k in candidates:
            self.peak, self.peak_at = float(before[k]), start_at
            if before[k] > start_peak:  # first reached in block j of this piece
                j = int(np.argmax(highs[:k]))
                self.peak_at = int(times_us[j * self.BLOCK + int(np.argmax(body[j]))])
            lo = int(k) * self.BLOCK
            self._update_exact(body[k], times_us[lo: lo + self.BLOCK])
        top = int(np.argmax(highs))
        if highs[top] > start_peak:
            self.peak = float(highs[top])
            self.peak_at = int(times_us[top * self.BLOCK + int(np.argmax(body[top]))])
        else:
            self.peak, self.peak_at = start_peak, start_at
        self._update_exact(equity[size:], times_us[size:])
        return True

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self._buffers is None or len(self._buffers[0]) < n:
            self._buffers = (np.empty(n), np.empty(n))
        return self._buffers[0][:n], self._buffers[1][:n]

    def _update_exact(self, equity: np.ndarray, times_us: np.ndarray) -> None:
        n = len(equity)
        if n == 0:
            return
        peak, below = self._scratch(n)
        np.maximum.accumulate(equity, out=peak)
        # Lift the prefix that stays below the peak carried in from earlier pieces.
        peak[: int(np.searchsorted(peak, self.peak, side="left"))] = self.peak
        np.subtract(equity, peak, out=below)
        at = int(np.argmin(below))
        if below[at] < self.amount.value:
            self.amount = self._drawdown(float(below[at]), at, peak, equity, times_us)
        if self.start_equity > 0:
            relative = np.divide(below, peak, out=below)
            at = int(np.argmin(relative))
            if relative[at] < self.fraction.value:
                self.fraction = self._drawdown(float(relative[at]), at, peak, equity, times_us)
        if peak[-1] > self.peak:
            first = int(np.argmax(equity))
            self.peak, self.peak_at = float(equity[first]), int(times_us[first])

    def _drawdown(self, value: float, trough: int, peak: np.ndarray, equity: np.ndarray,
                  times_us: np.ndarray) -> Drawdown:
        if peak[trough] > self.peak:  # the peak was reached in this piece
            first = int(np.argmax(equity[: trough + 1]))
            peak_equity, peak_at = float(equity[first]), int(times_us[first])
        else:
            peak_equity, peak_at = self.peak, self.peak_at
        return Drawdown(value, 0, None, peak_at, int(times_us[trough]), peak_equity,
                        float(equity[trough]))

    def result(self) -> tuple[Drawdown, Drawdown]:
        """(max drawdown as a fraction ≤ 0, max drawdown as an amount ≤ 0)."""
        if self.count == 0:
            return Drawdown(None, 0, NO_TRADES), Drawdown(None, 0, NO_TRADES)
        amount = dataclasses.replace(self.amount, sample_size=self.count)
        if self.start_equity <= 0:
            return Drawdown(None, self.count, NO_STARTING_EQUITY), amount
        return dataclasses.replace(self.fraction, sample_size=self.count), amount


def max_drawdown(equity: np.ndarray, times_us: np.ndarray, start_equity: float,
                 start_us: int | None) -> tuple[Drawdown, Drawdown]:
    """(max drawdown as a fraction, as an amount) of the path ``equity`` at ``times_us``."""
    tracker = DrawdownTracker(start_equity, start_us)
    tracker.update(equity, times_us)
    return tracker.result()


def daily_returns(equity_by_day: np.ndarray, start_equity: float) -> np.ndarray:
    """r_d = E_d ÷ E_{d−1} − 1, with E_{−1} the starting equity."""
    previous = np.concatenate(([start_equity], equity_by_day[:-1]))
    return equity_by_day / previous - 1.0


def sharpe_ratio(returns: np.ndarray, risk_free: float = 0.0, annualization: int = 365) -> Metric:
    """empyrical ``sharpe_ratio``: mean(r − rf) ÷ std(r − rf, ddof=1) × √A."""
    n = len(returns)
    if n < 2:
        return Metric(None, n, FEWER_THAN_TWO_DAYS if n else NO_DAYS)
    excess = returns - risk_free if risk_free else returns
    if excess.max() == excess.min():
        return Metric(None, n, ZERO_VARIANCE)
    std = excess.std(ddof=1)
    return defined(excess.mean() / std * math.sqrt(annualization), n, ZERO_VARIANCE)


def sortino_ratio(returns: np.ndarray, required_return: float = 0.0,
                  annualization: int = 365) -> Metric:
    """empyrical ``sortino_ratio``: mean(r − rf) × A ÷ (√mean(min(r − rf, 0)²) × √A)."""
    n = len(returns)
    if n < 2:
        return Metric(None, n, FEWER_THAN_TWO_DAYS if n else NO_DAYS)
    excess = returns - required_return if required_return else returns
    downside = np.minimum(excess, 0.0)
    downside_risk = math.sqrt(float(np.mean(downside * downside))) * math.sqrt(annualization)
    if downside_risk == 0:
        return Metric(None, n, NO_DOWNSIDE)
    return defined(float(excess.mean()) * annualization / downside_risk, n, NO_DOWNSIDE)


def annual_return(returns: np.ndarray, annualization: int = 365) -> Metric:
    """empyrical ``annual_return`` (CAGR): Π(1 + r)^(A ÷ days) − 1."""
    n = len(returns)
    if n == 0:
        return Metric(None, 0, NO_DAYS)
    growth = float(np.prod(1.0 + returns))
    if growth < 0:
        return Metric(None, n, EQUITY_DEPLETED)
    try:  # a Python float power raises where numpy would give inf
        value = growth ** (annualization / n) - 1.0
    except OverflowError:
        return Metric(None, n, BEYOND_FLOAT_RANGE)
    return defined(value, n, BEYOND_FLOAT_RANGE)


def calmar_ratio(cagr: Metric, daily_drawdown: Drawdown) -> Metric:
    """empyrical ``calmar_ratio``: CAGR ÷ |max daily drawdown|."""
    if cagr.value is None:
        return Metric(None, cagr.sample_size, cagr.undefined_reason)
    if daily_drawdown.value is None or daily_drawdown.value >= 0:
        return Metric(None, cagr.sample_size, NO_DRAWDOWN)
    return defined(cagr.value / abs(daily_drawdown.value), cagr.sample_size, NO_DRAWDOWN)


# --- the report ---------------------------------------------------------------------------

# Trades are scanned in pieces that stay in the CPU cache: every pass over a piece is
# then cheap, and no temporary as large as the input is allocated (page faults on
# fresh 8 MB buffers would cost more than the arithmetic).
CHUNK = 1 << 16


@dataclass
class TradeScan:
    """What one pass over the trades in close order yields."""

    sums: PnlSums
    streaks: StreakCounter
    drawdown: DrawdownTracker
    daily_equity: np.ndarray
    end_equity: float


def scan_trades(trades: TradeSeries, start_equity: float, start_us: int | None,
                day_ends_us: np.ndarray, chunk: int = CHUNK) -> TradeScan:
    """Sums, streaks, the equity path, its drawdown and the equity at each day's end.

    Equity after trade *i* is accumulated in exactly the order of
    ``cumsum([start_equity, pnl_0, …, pnl_i])``. The trades closed before a day ends
    are a prefix (close order), so a day's equity is the equity after the last of
    them: one binary search per day, not a pass over the trades.
    """
    pnl, times = trades.pnl, trades.closed_at_us
    sums, streaks = PnlSums(), StreakCounter()
    drawdown = DrawdownTracker(start_equity, start_us)
    last_trade = np.searchsorted(times, day_ends_us, side="left") - 1
    daily = np.full(len(day_ends_us), float(start_equity))
    size = min(len(pnl), chunk)
    equity_buffer, scratch = np.empty(size), np.empty(size)
    equity = float(start_equity)
    for lo in range(0, len(pnl), chunk):
        piece = pnl[lo: lo + chunk]
        hi = lo + len(piece)
        wins, losses = piece > 0, piece < 0
        sums.update(piece, wins, losses, scratch[: len(piece)])
        streaks.update(wins, losses)
        path = equity_buffer[: len(piece)]
        np.copyto(path, piece)
        path[0] += equity
        np.cumsum(path, out=path)
        equity = float(path[-1])
        drawdown.update(path, times[lo:hi])
        first, after = np.searchsorted(last_trade, (lo, hi))
        daily[first:after] = path[last_trade[first:after] - lo]
    return TradeScan(sums, streaks, drawdown, daily, equity)


@dataclass
class PerformanceInputs:
    """Everything a report needs besides the trades.

    ``bounds_us`` are the local day boundaries of the window (``periods.day_bounds``):
    the equity path starts at ``bounds_us[0]`` and day *d* is
    ``[bounds_us[d], bounds_us[d+1])``. ``risk_free_daily`` is the daily risk-free
    rate (empyrical's ``risk_free``), also the Sortino required return.
    """

    start_equity: float
    bounds_us: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    annualization: int = 365
    risk_free_daily: float = 0.0
    top_n: int = 5


def performance(trades: TradeSeries, inputs: PerformanceInputs) -> dict[str, Any]:
    """All metrics of a report, JSON-ready (no inf/nan), each with its sample size.

    Top/worst trades are returned as positions into ``trades`` (``"index"``) with
    their id and PnL; the caller adds the details it wants to show.
    """
    n = len(trades)
    start_equity = float(inputs.start_equity)
    bounds = inputs.bounds_us
    start_us = int(bounds[0]) if len(bounds) else (int(trades.closed_at_us[0]) if n else None)
    scan = scan_trades(trades, start_equity, start_us, bounds[1:])
    sums = scan.sums
    hold_mean, hold_median, hold_max = holding_time(trades.holding_seconds)
    dd_fraction, dd_amount = scan.drawdown.result()
    metrics = {
        "trades": Metric(n, n),
        "wins": Metric(sums.wins, n),
        "losses": Metric(sums.losses, n),
        "breakeven": Metric(sums.breakeven, n),
        "win_rate": win_rate(sums),
        "profit_factor": profit_factor(sums),
        "expectancy": expectancy(sums),
        "average_win": average_win(sums),
        "average_loss": average_loss(sums),
        "payoff_ratio": payoff_ratio(sums),
        "gross_profit": Metric(sums.gross_profit, n),
        "gross_loss": Metric(sums.gross_loss, n),
        "total_pnl": Metric(sums.total, n),
        "average_pnl": expectancy(sums),
        "average_pnl_percent": (Metric(trades.pnl_percent_total / n, n) if n
                                else Metric(None, 0, NO_TRADES)),
        "return_percent": (Metric(sums.total / start_equity * 100.0, n) if start_equity > 0
                           else Metric(None, n, NO_STARTING_EQUITY)),
        "fees_paid": Metric(float(trades.fees_total), n),
        "longest_win_streak": Metric(scan.streaks.wins.result, n),
        "longest_loss_streak": Metric(scan.streaks.losses.result, n),
        "holding_seconds_mean": hold_mean,
        "holding_seconds_median": hold_median,
        "holding_seconds_max": hold_max,
        "max_drawdown": dd_fraction,
        "max_drawdown_amount": dd_amount,
        **_daily_metrics(scan.daily_equity, inputs, start_equity, start_us),
    }
    flags = sorted({m.undefined_reason for m in metrics.values()
                    if m.value is None and m.undefined_reason})
    return {
        "trade_count": n,
        "day_count": len(scan.daily_equity),
        "start_equity": start_equity,
        "end_equity": scan.end_equity,
        "metrics": {name: m.as_dict() for name, m in metrics.items()},
        "flags": flags,
        "top_trades": _trade_refs(trades, winners_and_losers(trades.pnl, inputs.top_n,
                                                             best=True)),
        "worst_trades": _trade_refs(trades, winners_and_losers(trades.pnl, inputs.top_n,
                                                               best=False)),
    }


def _daily_metrics(daily: np.ndarray, inputs: PerformanceInputs, start_equity: float,
                   start_us: int | None) -> dict[str, Metric]:
    days = len(daily)
    names = ("sharpe_ratio", "sortino_ratio", "cagr", "calmar_ratio")
    if days == 0:
        return {"max_daily_drawdown": Drawdown(None, 0, NO_DAYS),
                **{name: Metric(None, 0, NO_DAYS) for name in names}}
    if start_equity <= 0:
        return {"max_daily_drawdown": Drawdown(None, days, NO_STARTING_EQUITY),
                **{name: Metric(None, days, NO_STARTING_EQUITY) for name in names}}
    # A day's equity is dated by the day's (local) start.
    daily_dd, _ = max_drawdown(daily, inputs.bounds_us[:-1], start_equity, start_us)
    if bool(np.any(daily[:-1] <= 0)):
        return {"max_daily_drawdown": daily_dd,
                **{name: Metric(None, days, EQUITY_DEPLETED) for name in names}}
    returns = daily_returns(daily, start_equity)
    cagr = annual_return(returns, inputs.annualization)
    return {
        "max_daily_drawdown": daily_dd,
        "sharpe_ratio": sharpe_ratio(returns, inputs.risk_free_daily, inputs.annualization),
        "sortino_ratio": sortino_ratio(returns, inputs.risk_free_daily, inputs.annualization),
        "cagr": cagr,
        "calmar_ratio": calmar_ratio(cagr, daily_dd),
    }


def _trade_refs(trades: TradeSeries, positions: np.ndarray) -> list[dict[str, Any]]:
    return [{"index": int(i), "id": int(trades.trade_ids[i]), "pnl": float(trades.pnl[i])}
            for i in positions]


def equity_points(closed_at_us: np.ndarray, pnl: np.ndarray, start_equity: float,
                  start_us: int | None, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The trade-by-trade equity curve, downsampled to at most ``max_points`` points.

    The first point is the starting equity at ``start_us``. Above the limit, the
    curve is cut into equal buckets of trades and each keeps its lowest and
    highest point (in time order), so drawdowns and peaks stay visible.
    """
    times = closed_at_us
    equity = np.cumsum(pnl) + start_equity
    if start_us is not None:
        times = np.concatenate(([start_us], times))
        equity = np.concatenate(([start_equity], equity))
    n = len(equity)
    if n <= max_points:
        return times, equity
    buckets = max(1, (max_points - 2) // 2)
    width = -(-(n - 2) // buckets)
    inner = equity[1:-1]
    padded = np.pad(inner, (0, buckets * width - len(inner)), mode="edge").reshape(buckets, width)
    base = np.arange(buckets) * width + 1
    lows = base + padded.argmin(axis=1)
    highs = base + padded.argmax(axis=1)
    keep = np.unique(np.concatenate(([0], np.minimum(lows, n - 2), np.minimum(highs, n - 2),
                                     [n - 1])))
    return times[keep], equity[keep]
