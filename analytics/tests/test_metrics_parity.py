"""Sharpe, Sortino, drawdown and Calmar equal empyrical's on random data (1e-9 relative)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import empyrical
import numpy as np
import pandas as pd
import pytest

from analytics import metrics as m
from analytics.periods import day_bounds, local_midnight, to_micros

SEEDS = range(8)
REL = 1e-9


def daily_returns(seed: int, days: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.001, 0.02, days)
    returns[rng.random(days) < 0.2] = 0.0  # days without trades
    return returns


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("risk_free", [0.0, 0.0001])
def test_sharpe_matches_empyrical(seed, risk_free):
    r = daily_returns(seed)
    ours = m.sharpe_ratio(r, risk_free, 365).value
    assert ours == pytest.approx(
        empyrical.sharpe_ratio(r, risk_free=risk_free, annualization=365), rel=REL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("required", [0.0, 0.0001])
def test_sortino_matches_empyrical(seed, required):
    r = daily_returns(seed)
    ours = m.sortino_ratio(r, required, 365).value
    assert ours == pytest.approx(
        empyrical.sortino_ratio(r, required_return=required, annualization=365), rel=REL)


@pytest.mark.parametrize("seed", SEEDS)
def test_daily_drawdown_cagr_and_calmar_match_empyrical(seed):
    r = daily_returns(seed)
    equity = 1000.0 * np.cumprod(1 + r)
    fraction, _ = m.max_drawdown(equity, np.arange(len(r)), 1000.0, -1)
    assert fraction.value == pytest.approx(empyrical.max_drawdown(r), rel=REL)
    cagr = m.annual_return(r, 365)
    assert cagr.value == pytest.approx(empyrical.annual_return(r, annualization=365), rel=REL)
    assert m.calmar_ratio(cagr, fraction).value == pytest.approx(
        empyrical.calmar_ratio(r, annualization=365), rel=REL)


@pytest.mark.parametrize("seed", SEEDS)
def test_report_from_trades_matches_empyrical_on_independently_built_daily_returns(seed):
    """Trades → report, against pandas grouping the same trades by local day + empyrical."""
    tz = ZoneInfo("Europe/Berlin")
    rng = np.random.default_rng(100 + seed)
    first = datetime(2025, 1, 1, tzinfo=tz)
    n = 3000
    closed = np.sort(to_micros(first) + rng.integers(0, 300 * 86_400_000_000, n))
    pnl = np.round(rng.normal(2, 40, n), 4)
    trades = m.TradeSeries(np.arange(n), closed, pnl, np.full(n, 60))
    end = datetime(2025, 11, 1, 12, tzinfo=tz)
    bounds = day_bounds(first, end, tz)
    report = m.performance(trades, m.PerformanceInputs(50_000.0, bounds))

    stamps = pd.to_datetime(closed, unit="us", utc=True).tz_convert(tz)
    by_day = pd.Series(pnl, index=stamps).groupby(stamps.date).sum()
    days = pd.date_range(first.date(), end.date(), freq="D").date
    daily_pnl = by_day.reindex(days, fill_value=0.0)
    equity = 50_000.0 + daily_pnl.cumsum().to_numpy()
    returns = equity / np.concatenate(([50_000.0], equity[:-1])) - 1

    metrics = report["metrics"]
    assert report["day_count"] == len(days)
    assert metrics["sharpe_ratio"]["value"] == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=365), rel=REL)
    assert metrics["sortino_ratio"]["value"] == pytest.approx(
        empyrical.sortino_ratio(returns, annualization=365), rel=REL)
    assert metrics["max_daily_drawdown"]["value"] == pytest.approx(
        empyrical.max_drawdown(returns), rel=REL)
    assert metrics["calmar_ratio"]["value"] == pytest.approx(
        empyrical.calmar_ratio(returns, annualization=365), rel=REL)


def test_local_midnight_is_the_day_start_in_that_zone():
    tz = ZoneInfo("Europe/Berlin")
    assert local_midnight(datetime(2025, 7, 1).date(), tz).astimezone(UTC) == datetime(
        2025, 6, 30, 22, tzinfo=UTC)
    assert day_bounds(datetime(2025, 7, 1, tzinfo=tz), datetime(2025, 7, 1, tzinfo=tz)
                      + timedelta(hours=1), tz).tolist() == [
        to_micros(datetime(2025, 6, 30, 22, tzinfo=UTC)),
        to_micros(datetime(2025, 6, 30, 23, tzinfo=UTC))]
