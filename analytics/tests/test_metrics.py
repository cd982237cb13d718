"""Metrics on small hand-computed datasets and their edge cases (pure, no database)."""

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analytics import metrics as m
from analytics.metrics import PerformanceInputs, TradeSeries, performance
from analytics.periods import day_bounds, to_micros

DAY1 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def at(day: int, hour: int, minute: int = 0) -> int:
    return to_micros(DAY1 + timedelta(days=day - 1, hours=hour, minutes=minute))


def series(pnl, closed_us, holding=None, fees=0.0, pnl_percent=0.0) -> TradeSeries:
    n = len(pnl)
    return TradeSeries(np.arange(1, n + 1, dtype=np.int64), np.asarray(closed_us, np.int64),
                       np.asarray(pnl, np.float64),
                       np.asarray(holding if holding is not None else [60] * n, np.int64),
                       fees, pnl_percent)


def report(trades: TradeSeries, start_equity=1000.0, days=5, top_n=3, **kwargs):
    bounds = day_bounds(DAY1, DAY1 + timedelta(days=days - 1, hours=18), UTC)
    return performance(trades, PerformanceInputs(start_equity, bounds, top_n=top_n, **kwargs))


def value(result, name):
    return result["metrics"][name]["value"]


# Seven trades over five days (day 2 without trades), starting equity 1000:
#   day 1: +100, −50   day 3: +30, 0   day 4: −20, −40   day 5: +60
# Equity after each trade: 1100, 1050, 1080, 1080, 1060, 1020, 1080.
# End-of-day equity: 1050, 1050, 1080, 1020, 1080.
HAND = series([100, -50, 30, 0, -20, -40, 60],
              [at(1, 10), at(1, 15), at(3, 9), at(3, 11), at(4, 8), at(4, 20), at(5, 12)],
              holding=[3600, 1800, 7200, 60, 600, 3000, 900], fees=7.0, pnl_percent=14.0)


@pytest.fixture(scope="module")
def hand():
    return report(HAND)


def test_counts_and_win_rate(hand):
    assert [value(hand, k) for k in ("trades", "wins", "losses", "breakeven")] == [7, 3, 3, 1]
    assert value(hand, "win_rate") == pytest.approx(3 / 7, rel=1e-12)
    assert hand["metrics"]["win_rate"]["sample_size"] == 7


def test_profit_factor_expectancy_and_averages(hand):
    # gross profit 100 + 30 + 60 = 190, gross loss 50 + 20 + 40 = 110
    assert value(hand, "gross_profit") == 190
    assert value(hand, "gross_loss") == 110
    assert value(hand, "profit_factor") == pytest.approx(190 / 110, rel=1e-12)
    assert value(hand, "total_pnl") == 80
    assert value(hand, "expectancy") == pytest.approx(80 / 7, rel=1e-12)
    assert value(hand, "average_pnl") == pytest.approx(80 / 7, rel=1e-12)
    assert value(hand, "average_win") == pytest.approx(190 / 3, rel=1e-12)
    assert hand["metrics"]["average_win"]["sample_size"] == 3
    assert value(hand, "average_loss") == pytest.approx(-110 / 3, rel=1e-12)
    assert value(hand, "payoff_ratio") == pytest.approx(19 / 11, rel=1e-12)
    assert hand["metrics"]["payoff_ratio"]["sample_size"] == 6


def test_percentages_and_fees(hand):
    assert value(hand, "average_pnl_percent") == pytest.approx(2.0)  # 14 / 7
    assert value(hand, "return_percent") == pytest.approx(8.0)  # 80 / 1000 × 100
    assert value(hand, "fees_paid") == 7.0


def test_streaks(hand):
    # W L W B L L W: the breakeven trade ends the win streak; two losses in a row
    assert value(hand, "longest_win_streak") == 1
    assert value(hand, "longest_loss_streak") == 2


def test_holding_time(hand):
    # sorted: 60 600 900 1800 3000 3600 7200
    assert value(hand, "holding_seconds_mean") == pytest.approx(17160 / 7)
    assert value(hand, "holding_seconds_median") == 1800
    assert value(hand, "holding_seconds_max") == 7200


def test_trade_by_trade_drawdown(hand):
    # Peak 1100 after trade 1, deepest point 1020 after trade 6.
    fraction, amount = hand["metrics"]["max_drawdown"], hand["metrics"]["max_drawdown_amount"]
    assert fraction["value"] == pytest.approx(-80 / 1100, rel=1e-12)
    assert amount["value"] == pytest.approx(-80)
    for dd in (fraction, amount):
        assert dd["peak_at"] == "2026-03-02T10:00:00Z"
        assert dd["trough_at"] == "2026-03-05T20:00:00Z"
        assert dd["peak_equity"] == 1100
        assert dd["trough_equity"] == 1020
        assert dd["sample_size"] == 7


def test_daily_drawdown(hand):
    # End-of-day equity 1050 1050 1080 1020 1080: from 1080 (day 3) to 1020 (day 4)
    daily = hand["metrics"]["max_daily_drawdown"]
    assert daily["value"] == pytest.approx(-60 / 1080, rel=1e-12)
    assert daily["peak_at"] == "2026-03-04T00:00:00Z"
    assert daily["trough_at"] == "2026-03-05T00:00:00Z"
    assert daily["sample_size"] == 5


# Daily returns r = [1/20, 0, 1/35, −1/18, 1/17]; mean = 0.0163678805 (Σ r / 5);
# sample std (ddof 1) = √0.0021308541 = 0.0461611751.
def test_sharpe_ratio(hand):
    assert hand["day_count"] == 5
    # 0.0163678805 / 0.0461611751 × √365
    assert value(hand, "sharpe_ratio") == pytest.approx(6.774262506832402, rel=1e-9)
    assert hand["metrics"]["sharpe_ratio"]["sample_size"] == 5


def test_sortino_ratio(hand):
    # downside deviation = √((1/18)² / 5); Sortino = mean × 365 / (√((1/18)²/5) × √365)
    expected = (0.05 + 0 + 1 / 35 - 1 / 18 + 1 / 17) / 5 * math.sqrt(365) * 18 * math.sqrt(5)
    assert value(hand, "sortino_ratio") == pytest.approx(expected, rel=1e-12)
    assert value(hand, "sortino_ratio") == pytest.approx(12.586250895413135, rel=1e-9)


def test_cagr_and_calmar(hand):
    # Equity 1000 → 1080 over 5 days: 1.08^(365/5) − 1; Calmar divides by 1/18
    assert value(hand, "cagr") == pytest.approx(1.08 ** 73 - 1, rel=1e-9)
    assert value(hand, "calmar_ratio") == pytest.approx((1.08 ** 73 - 1) * 18, rel=1e-9)


def test_top_and_worst_trades(hand):
    assert [(t["id"], t["pnl"]) for t in hand["top_trades"]] == [(1, 100), (7, 60), (3, 30)]
    assert [(t["id"], t["pnl"]) for t in hand["worst_trades"]] == [(2, -50), (6, -40), (5, -20)]
    assert hand["start_equity"] == 1000
    assert hand["end_equity"] == 1080
    assert hand["flags"] == []


def test_risk_free_rate_is_subtracted_from_daily_returns():
    rf = 0.001
    with_rf = report(HAND, risk_free_daily=rf)
    r = np.array([0.05, 0, 1 / 35, -1 / 18, 1 / 17]) - rf
    assert value(with_rf, "sharpe_ratio") == pytest.approx(
        r.mean() / r.std(ddof=1) * math.sqrt(365), rel=1e-12)


def test_report_is_strict_json(hand):
    json.dumps(hand, allow_nan=False)


# --- edge cases -----------------------------------------------------------------------------


def test_no_trades_gives_nulls_with_reasons_not_errors():
    result = report(TradeSeries.empty())
    assert value(result, "trades") == 0
    assert result["metrics"]["win_rate"] == {"value": None, "sample_size": 0,
                                             "undefined_reason": "no_trades"}
    assert value(result, "profit_factor") is None
    assert value(result, "max_drawdown") is None
    assert value(result, "holding_seconds_median") is None
    # Five days without trades: zero returns, so no variance and no downside
    assert result["metrics"]["sharpe_ratio"]["undefined_reason"] == "zero_variance"
    assert result["metrics"]["sortino_ratio"]["undefined_reason"] == "no_downside_days"
    assert value(result, "cagr") == 0
    assert result["metrics"]["calmar_ratio"]["undefined_reason"] == "no_drawdown"
    assert result["top_trades"] == [] and result["worst_trades"] == []
    assert result["end_equity"] == 1000
    json.dumps(result, allow_nan=False)


def test_no_days_at_all():
    result = performance(TradeSeries.empty(), PerformanceInputs(1000.0))
    assert result["day_count"] == 0
    assert result["metrics"]["sharpe_ratio"]["undefined_reason"] == "no_days"
    assert result["metrics"]["max_daily_drawdown"]["undefined_reason"] == "no_days"


def test_single_winning_trade():
    result = report(series([25.0], [at(1, 12)]), days=1)
    assert value(result, "win_rate") == 1
    assert result["metrics"]["profit_factor"] == {"value": None, "sample_size": 1,
                                                  "undefined_reason": "no_losses"}
    assert result["metrics"]["average_loss"]["undefined_reason"] == "no_losses"
    assert value(result, "payoff_ratio") is None
    assert value(result, "max_drawdown") == 0
    assert value(result, "longest_win_streak") == 1
    assert result["metrics"]["sharpe_ratio"]["undefined_reason"] == "fewer_than_two_days"
    assert result["metrics"]["calmar_ratio"]["undefined_reason"] == "no_drawdown"
    assert set(result["flags"]) == {"no_losses", "fewer_than_two_days", "no_drawdown"}


def test_single_losing_trade():
    result = report(series([-10.0], [at(1, 12)]), days=1)
    assert value(result, "profit_factor") == 0
    assert result["metrics"]["average_win"]["undefined_reason"] == "no_wins"
    assert value(result, "max_drawdown") == pytest.approx(-0.01)
    assert result["metrics"]["max_drawdown"]["peak_equity"] == 1000
    assert result["metrics"]["max_drawdown"]["peak_at"] == "2026-03-02T00:00:00Z"


def test_no_losses_never_yields_infinity():
    result = report(series([5.0, 10.0, 15.0], [at(1, 1), at(2, 1), at(3, 1)]))
    assert result["metrics"]["profit_factor"]["undefined_reason"] == "no_losses"
    assert result["metrics"]["sortino_ratio"]["undefined_reason"] == "no_downside_days"
    assert result["metrics"]["calmar_ratio"]["undefined_reason"] == "no_drawdown"
    assert value(result, "sharpe_ratio") is not None
    json.dumps(result, allow_nan=False)


def test_only_breakeven_trades_have_zero_variance():
    result = report(series([0.0, 0.0, 0.0], [at(1, 1), at(2, 1), at(3, 1)]))
    assert result["metrics"]["profit_factor"]["undefined_reason"] == "no_wins_or_losses"
    assert result["metrics"]["payoff_ratio"]["undefined_reason"] == "no_wins_or_losses"
    assert value(result, "breakeven") == 3
    assert value(result, "longest_win_streak") == 0
    assert result["metrics"]["sharpe_ratio"]["undefined_reason"] == "zero_variance"


def test_no_starting_equity_leaves_fractions_undefined():
    result = report(series([10.0, -5.0], [at(1, 1), at(2, 1)]), start_equity=0.0)
    assert result["metrics"]["max_drawdown"]["undefined_reason"] == "no_starting_equity"
    assert value(result, "max_drawdown_amount") == -5
    assert result["metrics"]["return_percent"]["undefined_reason"] == "no_starting_equity"
    assert result["metrics"]["sharpe_ratio"]["undefined_reason"] == "no_starting_equity"


def test_depleted_equity_leaves_returns_undefined():
    result = report(series([-150.0, 10.0], [at(1, 1), at(2, 1)]), start_equity=100.0, days=2)
    assert value(result, "max_drawdown") == pytest.approx(-1.5)
    assert result["metrics"]["sharpe_ratio"]["undefined_reason"] == "equity_depleted"
    assert result["metrics"]["cagr"]["undefined_reason"] == "equity_depleted"


def test_equal_pnl_ranks_the_earlier_trade_first():
    trades = series([5.0, 9.0, 5.0, 9.0, -1.0, -1.0],
                    [at(1, 1), at(1, 2), at(1, 3), at(1, 4), at(1, 5), at(1, 6)])
    result = report(trades, top_n=3)
    assert [t["id"] for t in result["top_trades"]] == [2, 4, 1]
    assert [t["id"] for t in result["worst_trades"]] == [5, 6]  # losers only: 1 won


def test_top_trades_are_winners_and_worst_trades_losers_never_both():
    """The issue: TOP TRADES listed losing trades and one trade was in both lists."""
    trades = series([-3.0, 2.0, -1.0, 0.0, -5.0], [at(1, h) for h in range(1, 6)])
    result = report(trades, top_n=5)
    assert [(t["id"], t["pnl"]) for t in result["top_trades"]] == [(2, 2.0)]
    assert [(t["id"], t["pnl"]) for t in result["worst_trades"]] == [(5, -5.0), (1, -3.0),
                                                                      (3, -1.0)]


def test_trades_out_of_close_order_are_refused_or_sorted():
    with pytest.raises(ValueError, match="close order"):
        series([1.0, 2.0], [at(1, 2), at(1, 1)])
    sorted_series = TradeSeries.from_unsorted(np.array([7, 3, 5]),
                                              np.array([at(1, 2), at(1, 1), at(1, 1)]),
                                              np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3]))
    assert sorted_series.trade_ids.tolist() == [3, 5, 7]
    assert sorted_series.pnl.tolist() == [2.0, 3.0, 1.0]


# --- building blocks --------------------------------------------------------------------------


def test_scanning_in_small_pieces_matches_one_piece():
    rng = np.random.default_rng(7)
    n = 1000
    trades = series(np.round(rng.normal(0, 10, n), 2) * (rng.random(n) > 0.1),
                    np.sort(at(1, 0) + rng.integers(0, 10 * 86_400_000_000, n)))
    bounds = day_bounds(DAY1, DAY1 + timedelta(days=10), UTC)
    whole = m.scan_trades(trades, 500.0, int(bounds[0]), bounds[1:], chunk=n)
    pieces = m.scan_trades(trades, 500.0, int(bounds[0]), bounds[1:], chunk=7)
    # Sums add per piece: equal up to rounding; everything else is exact.
    assert (pieces.sums.trades, pieces.sums.wins, pieces.sums.losses) == (
        whole.sums.trades, whole.sums.wins, whole.sums.losses)
    assert pieces.sums.gross_profit == pytest.approx(whole.sums.gross_profit, rel=1e-12)
    assert pieces.sums.gross_loss == pytest.approx(whole.sums.gross_loss, rel=1e-12)
    assert pieces.streaks == whole.streaks
    assert pieces.drawdown.result() == whole.drawdown.result()
    np.testing.assert_array_equal(pieces.daily_equity, whole.daily_equity)
    assert pieces.end_equity == whole.end_equity
    # and the equity path is accumulated exactly like cumsum([start, pnl…])
    assert whole.end_equity == np.cumsum(np.concatenate(([500.0], trades.pnl)))[-1]


def test_streaks_at_the_edges():
    assert m.longest_streaks(np.array([1.0, 2.0, 3.0])) == (3, 0)
    assert m.longest_streaks(np.array([-1.0, -2.0, 1.0, -1.0])) == (1, 2)
    assert m.longest_streaks(np.array([1.0, 0.0, 1.0, 1.0])) == (2, 0)
    assert m.longest_streaks(np.array([])) == (0, 0)


@pytest.mark.parametrize("values", [[5], [4, 1], [9, 1, 5, 3], [2, 2, 2, 7, 1]])
def test_median_holding_time_matches_numpy(values):
    _, median, _ = m.holding_time(np.array(values, dtype=np.int64))
    assert median.value == np.median(values)


def test_median_holding_time_of_a_wide_range_uses_selection():
    values = np.array([1, 10**9, 5, 7], dtype=np.int64)
    _, median, longest = m.holding_time(values)
    assert median.value == 6.0
    assert longest.value == 10**9


def test_top_trades_from_a_sample_threshold_are_exact():
    rng = np.random.default_rng(3)
    pnl = np.round(rng.normal(0, 5, 50_000), 1)  # many ties
    for best in (True, False):
        picked = m.extreme_trades(pnl, 12, best=best)
        key = -pnl if best else pnl
        expected = np.lexsort((np.arange(len(pnl)), key))[:12]
        np.testing.assert_array_equal(picked, expected)


def test_equity_points_are_downsampled_keeping_extremes():
    rng = np.random.default_rng(11)
    pnl = rng.normal(0, 1, 10_000)
    pnl[6000] = -500.0
    times = np.arange(10_000, dtype=np.int64) * 1_000_000
    t, equity = m.equity_points(times, pnl, 1000.0, -1, max_points=200)
    full = np.concatenate(([1000.0], 1000.0 + np.cumsum(pnl)))
    assert len(equity) <= 200
    assert t[0] == -1 and equity[0] == 1000.0
    assert t[-1] == times[-1] and equity[-1] == pytest.approx(full[-1])
    assert equity.min() == pytest.approx(full.min())
    assert equity.max() == pytest.approx(full.max())
    assert np.all(np.diff(t) > 0)


def test_equity_points_below_the_limit_are_all_kept():
    t, equity = m.equity_points(np.array([5, 6]), np.array([1.0, -2.0]), 10.0, 0, 100)
    assert t.tolist() == [0, 5, 6]
    assert equity.tolist() == [10.0, 11.0, 9.0]


def test_every_metric_has_a_definition(hand):
    assert set(hand["metrics"]) == set(m.METRIC_DEFINITIONS)


class _ScanEverything(m.DrawdownTracker):
    MAX_CANDIDATES = -1  # every piece falls back to the element-by-element scan


def _reference_drawdowns(equity, start):
    path = np.concatenate(([start], equity))
    peak = np.maximum.accumulate(path)
    amount_at = int(np.argmin(path - peak))
    fraction_at = int(np.argmin((path - peak) / peak))
    return (path - peak)[amount_at], amount_at - 1, ((path - peak) / peak)[fraction_at], \
        fraction_at - 1


@pytest.mark.parametrize("case", range(12))
def test_block_pruned_drawdown_equals_the_full_scan(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(2_000, 40_000))
    kind = case % 4
    if kind == 0:
        steps = rng.normal(0.05, 1.0, n)  # a random walk
    elif kind == 1:
        steps = rng.integers(-3, 4, n).astype(float)  # integer steps: many ties
    elif kind == 2:
        steps = -np.abs(rng.normal(0, 1, n))  # only losses: every block qualifies
    else:
        steps = rng.normal(-0.02, 3.0, n)  # equity goes below zero
    start = 100.0
    equity = start + np.cumsum(steps)
    times = np.arange(n, dtype=np.int64) * 1_000
    pieces = [(0, n)] if case < 6 else [(lo, min(lo + 4_099, n)) for lo in range(0, n, 4_099)]
    fast, full = m.DrawdownTracker(start, -1), _ScanEverything(start, -1)
    for lo, hi in pieces:
        fast.update(equity[lo:hi], times[lo:hi])
        full.update(equity[lo:hi], times[lo:hi])
    assert fast.result() == full.result()
    amount, amount_at, fraction, fraction_at = _reference_drawdowns(equity, start)
    fraction_dd, amount_dd = fast.result()
    assert amount_dd.value == amount and amount_dd.trough_at_us == times[amount_at]
    assert fraction_dd.value == fraction and fraction_dd.trough_at_us == times[fraction_at]


def test_a_cagr_beyond_the_float_range_is_undefined_not_an_error():
    """One day in which equity grew 100×: 100^365 overflows a float (the report must still come)."""
    result = report(series([2_475_000.0], [at(1, 12)]), start_equity=25_000.0, days=1)
    assert result["metrics"]["cagr"] == {"value": None, "sample_size": 1,
                                         "undefined_reason": "beyond_float_range"}
    assert result["metrics"]["calmar_ratio"]["value"] is None
    assert result["metrics"]["total_pnl"]["value"] == 2_475_000.0
