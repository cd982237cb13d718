"""Fetching trades as arrays: the PostgreSQL binary path equals the portable one."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from analytics import selectors
from analytics.periods import Window, to_micros
from analytics.selectors import TradeFilters

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


@pytest.fixture
def trades(make_trade):
    made = [make_trade(Decimal("12.3456789012"), T0 + timedelta(hours=1), fees=Decimal("0.5"),
                       pnl_percent=Decimal("1.25"), symbol="BTC/USDT"),
            make_trade(-7, T0, hold=timedelta(seconds=59), fees=Decimal("0.25"),
                       pnl_percent=Decimal("-0.5"), symbol="ETH/USDT"),
            make_trade(3, T0, fees=Decimal("0"), pnl_percent=Decimal("0.1"), symbol="BTC/USDT",
                       exit_reason="timeout")]
    return made


def test_trades_come_back_in_close_order_with_their_totals(trades):
    series = selectors.trade_series(selectors.trades_in(TradeFilters()))
    # Two trades closed at T0: id order breaks the tie.
    assert series.trade_ids.tolist() == [trades[1].id, trades[2].id, trades[0].id]
    assert series.closed_at_us.tolist() == [to_micros(T0)] * 2 + [
        to_micros(T0 + timedelta(hours=1))]
    assert series.pnl.tolist() == [-7.0, 3.0, 12.3456789012]
    assert series.holding_seconds.tolist() == [59, 1800, 1800]
    assert series.fees_total == 0.75
    assert series.pnl_percent_total == pytest.approx(0.85)


def test_filters_and_window_apply(trades):
    qs = selectors.trades_in(TradeFilters(symbol="BTC/USDT"),
                             Window(T0 + timedelta(minutes=1), None))
    assert selectors.trade_series(qs).trade_ids.tolist() == [trades[0].id]
    qs = selectors.trades_in(TradeFilters(exit_reason="timeout"), Window(None, T0))
    assert len(selectors.trade_series(qs)) == 0


def test_no_trades_is_an_empty_series(db):
    assert len(selectors.trade_series(selectors.trades_in(TradeFilters()))) == 0


@pytest.mark.postgres
def test_binary_postgres_fetch_equals_the_portable_fetch(trades, strategy):
    qs = selectors.trades_in(TradeFilters(strategy=strategy.name),
                             Window(T0 - timedelta(days=1), T0 + timedelta(days=1)))
    columns = qs.order_by().values("id", "closed_at", "pnl", "holding_seconds", "fees",
                                   "pnl_percent")
    fast = selectors._trade_series_postgres(columns, "default")
    portable = selectors._trade_series_generic(columns)
    for name in ("trade_ids", "closed_at_us", "pnl", "holding_seconds"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(portable, name))
    assert (fast.fees_total, fast.pnl_percent_total) == (portable.fees_total,
                                                         portable.pnl_percent_total)


def test_binary_array_layout_is_parsed():
    header = np.array([1, 0, 701, 3, 1], dtype=">i4").tobytes()
    body = b"".join(np.array([8], ">i4").tobytes() + np.array([v], ">f8").tobytes()
                    for v in (1.5, -2.0, 3.25))
    assert selectors._binary_array(header + body, ">f8").tolist() == [1.5, -2.0, 3.25]
    empty = np.array([0, 0, 701], dtype=">i4").tobytes()
    assert selectors._binary_array(empty, ">f8").tolist() == []


def test_starting_capital_of_no_account_is_zero(db):
    assert selectors.starting_capital(TradeFilters()) == 0
