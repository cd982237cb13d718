"""Reports from the database: scope, periods in the local time zone, caches."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from analytics import services
from analytics.models import MetricSnapshot, RealisedPnlCheckpoint
from analytics.periods import Period
from analytics.selectors import TradeFilters
from analytics.services import ReportRequest
from analytics.tasks import refresh_reports
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory, TradeFactory

pytestmark = pytest.mark.django_db
DAY1 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")


def at(day, hour, minute=0):
    return DAY1 + timedelta(days=day - 1, hours=hour, minutes=minute)


def report(period=Period.ALL, **kwargs):
    filters = TradeFilters(**{k: kwargs.pop(k) for k in ("strategy", "symbol", "exit_reason")
                              if k in kwargs})
    return services.performance_report(ReportRequest(period=period, filters=filters, **kwargs))


def value(result, name):
    return result["metrics"][name]["value"]


@pytest.fixture
def hand_trades(make_trade, account):
    """The hand-computed example of test_metrics, stored: equity 1000 → 1080 over 5 days."""
    account.starting_capital = Decimal("1000")
    account.save()
    pnls = [100, -50, 30, 0, -20, -40, 60]
    times = [at(1, 10), at(1, 15), at(3, 9), at(3, 11), at(4, 8), at(4, 20), at(5, 12)]
    return [make_trade(p, t, symbol=f"S{i}/USDT", fees=Decimal("1"), pnl_percent=Decimal("2"))
            for i, (p, t) in enumerate(zip(pnls, times, strict=True))]


@time_machine.travel(at(5, 18), tick=False)
def test_report_from_the_database_is_the_hand_computed_one(hand_trades):
    result = report(top_n=2)
    assert result["trade_count"] == 7 and result["day_count"] == 5
    assert result["starting_capital"] == 1000 and result["end_equity"] == 1080
    assert value(result, "win_rate") == pytest.approx(3 / 7)
    assert value(result, "profit_factor") == pytest.approx(190 / 110)
    assert value(result, "fees_paid") == 7
    assert value(result, "average_pnl_percent") == 2
    assert value(result, "max_drawdown") == pytest.approx(-80 / 1100)
    assert result["metrics"]["max_drawdown"]["peak_at"] == "2026-03-02T10:00:00Z"
    assert value(result, "sharpe_ratio") == pytest.approx(6.774262506832402, rel=1e-9)
    assert value(result, "sortino_ratio") == pytest.approx(12.586250895413135, rel=1e-9)
    best, second = result["top_trades"]
    assert (best["id"], best["symbol"], best["pnl"]) == (hand_trades[0].id, "S0/USDT", 100.0)
    assert best["strategy"] == hand_trades[0].strategy.name
    assert best["closed_at"] == at(1, 10) and best["holding_seconds"] == 1800
    assert second["pnl"] == 60
    assert [t["pnl"] for t in result["worst_trades"]] == [-50, -40]
    assert result["cached"] is False


@time_machine.travel(at(5, 18), tick=False)
def test_filters_by_strategy_symbol_and_exit_reason(make_trade):
    other = StrategyFactory(account=ExchangeAccountFactory(starting_capital=Decimal("3000")))
    make_trade(10, at(1, 1), symbol="BTC/USDT", exit_reason="signal")
    make_trade(-4, at(1, 2), symbol="ETH/USDT", exit_reason="timeout")
    make_trade(7, at(1, 3), symbol="BTC/USDT", exit_reason="risk", strategy=other)
    ExchangeAccountFactory(starting_capital=Decimal("99999"))  # no strategy: not in scope
    assert value(report(), "total_pnl") == 13
    assert report()["starting_capital"] == 13000
    by_strategy = report(strategy=other.name)
    assert value(by_strategy, "total_pnl") == 7 and by_strategy["starting_capital"] == 3000
    assert value(report(symbol="BTC/USDT"), "total_pnl") == 17
    assert value(report(exit_reason="timeout"), "total_pnl") == -4


@time_machine.travel(at(5, 18), tick=False)
def test_period_report_starts_from_the_equity_realised_before_it(make_trade, account):
    make_trade(500, DAY1 - timedelta(days=3))  # last week
    make_trade(-100, DAY1 - timedelta(days=1))
    make_trade(200, at(2, 12))  # this week
    week = report(Period.WEEK)
    assert week["realised_before_window"] == 400
    assert week["start_equity"] == 10_400  # 10 000 starting capital + 400
    assert value(week, "return_percent") == pytest.approx(200 / 10_400 * 100)
    assert week["window"]["start"] == DAY1 and week["window"]["days"] == 5


@time_machine.travel(at(5, 18), tick=False)
def test_explicit_start_and_end_narrow_the_window(make_trade):
    for day in (1, 2, 3, 4):
        make_trade(day, at(day, 12))
    result = report(start=at(2, 0), end=at(4, 0))
    assert value(result, "total_pnl") == 5  # days 2 and 3
    assert result["realised_before_window"] == 1
    assert result["window"]["days"] == 2
    assert not RealisedPnlCheckpoint.objects.exists()  # arbitrary starts are not stored


# --- period boundaries in the configured time zone -------------------------------------------


@pytest.fixture
def berlin(settings):
    settings.TIME_ZONE = "Europe/Berlin"


@pytest.fixture
def boundary_trades(berlin, make_trade):
    """PnL 1, 2, 4, 8 closed either side of local midnights (Berlin, UTC+1 in winter)."""
    make_trade(1, datetime(2026, 2, 28, 23, 59, 59, tzinfo=BERLIN))  # Saturday, February
    make_trade(2, datetime(2026, 3, 1, 0, 0, 0, tzinfo=BERLIN))  # Sunday, March
    make_trade(4, datetime(2026, 3, 1, 23, 59, 59, tzinfo=BERLIN))  # Sunday
    make_trade(8, datetime(2026, 3, 2, 0, 0, 0, tzinfo=BERLIN))  # Monday: a new week


@pytest.mark.parametrize(("now", "period", "total"), [
    (datetime(2026, 3, 2, 12, tzinfo=BERLIN), Period.TODAY, 8),
    (datetime(2026, 3, 2, 12, tzinfo=BERLIN), Period.WEEK, 8),
    (datetime(2026, 3, 2, 12, tzinfo=BERLIN), Period.MONTH, 2 + 4 + 8),
    (datetime(2026, 3, 1, 12, tzinfo=BERLIN), Period.TODAY, 2 + 4),
    (datetime(2026, 3, 1, 12, tzinfo=BERLIN), Period.WEEK, 1 + 2 + 4),
    (datetime(2026, 3, 1, 12, tzinfo=BERLIN), Period.MONTH, 2 + 4 + 8),
    (datetime(2026, 2, 28, 23, 59, 59, tzinfo=BERLIN), Period.TODAY, 1),
    (datetime(2026, 2, 28, 23, 59, 59, tzinfo=BERLIN), Period.MONTH, 1),
])
def test_trades_either_side_of_local_midnight_land_in_the_right_period(
        boundary_trades, now, period, total):
    with time_machine.travel(now, tick=False):
        result = report(period)
    assert value(result, "total_pnl") == total
    assert result["time_zone"] == "Europe/Berlin"


def test_a_trade_at_23_59_59_counts_in_that_local_day(boundary_trades):
    with time_machine.travel(datetime(2026, 3, 2, 12, tzinfo=BERLIN), tick=False):
        curve = services.equity_curve(ReportRequest(period=Period.MONTH), resolution="day")
    # MONTH starts at 2026-03-01 00:00 Berlin with 10 000 + 1 (February's trade)
    assert curve["start_equity"] == 10_001
    assert [(p["time"], p["equity"]) for p in curve["points"]] == [
        (datetime(2026, 3, 1, tzinfo=BERLIN), 10_001 + 2 + 4),
        (datetime(2026, 3, 2, tzinfo=BERLIN), 10_001 + 2 + 4 + 8),
    ]


# --- equity curve -----------------------------------------------------------------------------


@time_machine.travel(at(5, 18), tick=False)
def test_equity_curve_after_every_trade(hand_trades):
    curve = services.equity_curve(ReportRequest())
    assert curve["total_points"] == 8 and curve["downsampled"] is False
    assert [p["equity"] for p in curve["points"]] == [1000, 1100, 1050, 1080, 1080, 1060, 1020,
                                                      1080]
    assert curve["points"][0]["time"] == DAY1
    assert curve["points"][1]["time"] == at(1, 10)


@time_machine.travel(at(5, 18), tick=False)
def test_equity_curve_is_downsampled_to_the_limit(make_trade):
    TradeFactory.create_batch(60, strategy=make_trade(1, at(1, 1)).strategy,
                              closed_at=at(2, 1), opened_at=at(2, 0), pnl=Decimal("-1"))
    curve = services.equity_curve(ReportRequest(), max_points=10)
    assert curve["total_points"] == 62 and curve["downsampled"] is True
    assert len(curve["points"]) <= 10
    equities = [p["equity"] for p in curve["points"]]
    assert max(equities) == 10_001 and min(equities) == 10_001 - 60


# --- checkpoints and snapshots ----------------------------------------------------------------


@time_machine.travel(at(5, 18), tick=False)
def test_realised_pnl_before_a_period_is_checkpointed_and_forgotten_when_history_changes(
        make_trade):
    make_trade(300, DAY1 - timedelta(days=2))
    assert report(Period.WEEK)["realised_before_window"] == 300
    checkpoint = RealisedPnlCheckpoint.objects.get()
    assert (checkpoint.scope, checkpoint.before, checkpoint.realised_pnl) == ("all", DAY1, 300)
    late = make_trade(-50, DAY1 - timedelta(days=1))  # imported history: before the week
    assert not RealisedPnlCheckpoint.objects.exists()
    assert report(Period.WEEK)["realised_before_window"] == 250
    make_trade(5, at(5, 17))  # a live close inside the week keeps the checkpoint
    assert RealisedPnlCheckpoint.objects.count() == 1
    late.delete()
    assert report(Period.WEEK)["realised_before_window"] == 300


@pytest.fixture
def every_three_trades(live_trading):
    live_trading({"performanceAnalytics": {"metricsInterval": 3}})


@time_machine.travel(at(5, 18), tick=False)
def test_snapshots_refresh_every_metrics_interval_trades(every_three_trades, make_trade,
                                                         strategy):
    make_trade(10, at(1, 1))
    assert services.reports_refresh() == 8  # ALL/TODAY/WEEK/MONTH × (all, the strategy)
    assert set(MetricSnapshot.objects.values_list("period", "scope")) == {
        (p, s) for p in ("ALL", "TODAY", "WEEK", "MONTH") for s in ("all", f"strategy={strategy.name}")}
    make_trade(1, at(5, 2))
    make_trade(1, at(5, 3))
    assert services.reports_refresh() == 0
    cached = services.cached_performance_report(ReportRequest())
    assert cached["cached"] is True and cached["trades_since"] == 2
    assert value(cached, "total_pnl") == 10
    make_trade(1, at(5, 4))
    assert refresh_reports.apply().get() == 8
    assert value(services.cached_performance_report(ReportRequest()), "total_pnl") == 13


@time_machine.travel(at(5, 18), tick=False)
def test_snapshots_refresh_when_the_calendar_window_moves(every_three_trades, make_trade):
    make_trade(10, at(5, 1))
    services.reports_refresh()
    with time_machine.travel(at(6, 0, 1), tick=False):  # Saturday: same week and month
        assert services.reports_refresh() == 2  # TODAY for "all" and the strategy
        today = services.cached_performance_report(ReportRequest(period=Period.TODAY))
    assert today["cached"] is True and value(today, "trades") == 0


@time_machine.travel(at(5, 18), tick=False)
def test_filtered_or_narrowed_requests_are_computed_not_cached(make_trade):
    make_trade(10, at(5, 1))
    services.reports_refresh()
    make_trade(5, at(5, 2))
    assert services.cached_performance_report(ReportRequest())["cached"] is True
    narrowed = services.cached_performance_report(ReportRequest(start=at(1, 0)))
    assert narrowed["cached"] is False and value(narrowed, "total_pnl") == 15
    by_symbol = services.cached_performance_report(
        ReportRequest(filters=TradeFilters(symbol="BTC/USDT:USDT")))
    assert by_symbol["cached"] is False


def test_disabled_analytics_refresh_nothing(live_trading, make_trade):
    live_trading({"performanceAnalytics": {"enabled": False}})
    make_trade(1, datetime.now(UTC))
    assert services.reports_refresh() == 0
    assert not MetricSnapshot.objects.exists()


@time_machine.travel(at(5, 18), tick=False)
def test_editing_a_trade_forgets_checkpoints_unless_only_other_fields_change(make_trade):
    trade = make_trade(300, DAY1 - timedelta(days=2))
    report(Period.WEEK)
    trade.external_ref = "bot-7"
    trade.save(update_fields=["external_ref"])
    assert RealisedPnlCheckpoint.objects.count() == 1
    trade.pnl = Decimal("100")
    trade.save()
    assert not RealisedPnlCheckpoint.objects.exists()
    assert report(Period.WEEK)["realised_before_window"] == 100
