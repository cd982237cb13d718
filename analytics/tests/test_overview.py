"""Profit per day/week/month, the strategy summary, account balances and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from tradingsite.testing.factories import (
    ExchangeAccountFactory,
    PositionFactory,
    StrategyFactory,
    TradeFactory,
)

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday


def day(d: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, d, hour, tzinfo=UTC)


@pytest.fixture
def book(db):
    account = ExchangeAccountFactory(name="paper-eur", starting_capital=Decimal("1000"),
                                     quote_currency="EUR")
    trend = StrategyFactory(name="trend", account=account)
    scalp = StrategyFactory(name="scalp", account=account)

    def trade(strategy, pnl, closed, fees="1"):
        return TradeFactory(strategy=strategy, pnl=Decimal(pnl), fees=Decimal(fees),
                            closed_at=closed, opened_at=closed - timedelta(hours=1),
                            pnl_percent=Decimal(pnl) / 10)

    trade(trend, "100", datetime(2026, 2, 20, 12, tzinfo=UTC))  # last month
    trade(trend, "50", day(2))   # Monday
    trade(scalp, "-20", day(3))
    trade(trend, "10", day(4, 9))
    trade(trend, "-5", day(4, 10))
    PositionFactory(strategy=trend, side="long", quantity=Decimal("2"),
                    entry_price=Decimal("100"), last_price=Decimal("110"))
    PositionFactory(strategy=scalp, side="short", quantity=Decimal("1"),
                    entry_price=Decimal("200"), last_price=Decimal("190"))
    return account


@time_machine.travel(NOW, tick=False)
def test_the_daily_table_starts_today_and_measures_against_the_equity_at_each_start(
        viewer_api, book):
    body = viewer_api.get("/api/analytics/profit", {"unit": "day", "count": 3}).json()
    assert (body["unit"], body["currency"], body["starting_capital"]) == ("day", "EUR", 1000.0)
    rows = [(r["start"], r["trades"], r["wins"], r["losses"], r["pnl"], r["pnl_percent"],
             r["start_equity"]) for r in body["rows"]]
    # Equity before Mar 2: 1000 + 100; Mar 2 +50 → 1150; Mar 3 −20 → 1130.
    assert rows == [
        ("2026-03-04T00:00:00Z", 2, 1, 1, 5.0, pytest.approx(5 / 1130 * 100), 1130.0),
        ("2026-03-03T00:00:00Z", 1, 0, 1, -20.0, pytest.approx(-20 / 1150 * 100), 1150.0),
        ("2026-03-02T00:00:00Z", 1, 1, 0, 50.0, pytest.approx(50 / 1100 * 100), 1100.0)]
    assert body["rows"][0]["end"] is None and body["rows"][1]["end"] == "2026-03-04T00:00:00Z"


@time_machine.travel(NOW, tick=False)
def test_weekly_and_monthly_tables_add_up_by_calendar_unit(viewer_api, book):
    weeks = viewer_api.get("/api/analytics/profit", {"unit": "week", "count": 2}).json()["rows"]
    assert [(w["start"], w["trades"], w["pnl"]) for w in weeks] == [
        ("2026-03-02T00:00:00Z", 4, 35.0), ("2026-02-23T00:00:00Z", 0, 0.0)]
    months = viewer_api.get("/api/analytics/profit", {"unit": "month", "count": 2}).json()["rows"]
    assert [(m["start"], m["trades"], m["pnl"]) for m in months] == [
        ("2026-03-01T00:00:00Z", 4, 35.0), ("2026-02-01T00:00:00Z", 1, 100.0)]


@time_machine.travel(NOW, tick=False)
def test_the_profit_table_refuses_bad_input_naming_the_field(viewer_api, book):
    assert viewer_api.get("/api/analytics/profit", {"unit": "year"}).status_code == 400
    too_many = viewer_api.get("/api/analytics/profit", {"unit": "month", "count": 367})
    assert too_many.status_code == 400 and "count" in too_many.json()
    unknown = viewer_api.get("/api/analytics/profit", {"strategy": "nosuch"})
    assert unknown.status_code == 400 and "strategy" in unknown.json()


@time_machine.travel(NOW, tick=False)
def test_the_strategy_summary_counts_the_period_and_what_each_holds(viewer_api, book):
    body = viewer_api.get("/api/analytics/strategies", {"period": "WEEK"}).json()
    rows = {r["strategy"]: r for r in body["strategies"]}
    assert {k: rows["trend"][k] for k in ("trades", "wins", "losses", "win_rate", "pnl",
                                          "return_percent", "open_positions",
                                          "unrealised_pnl", "currency")} == {
        "trades": 3, "wins": 2, "losses": 1, "win_rate": pytest.approx(2 / 3), "pnl": 55.0,
        "return_percent": 5.5, "open_positions": 1, "unrealised_pnl": 20.0, "currency": "EUR"}
    assert (rows["scalp"]["pnl"], rows["scalp"]["unrealised_pnl"]) == (-20.0, 10.0)


@time_machine.travel(NOW, tick=False)
def test_account_balances_add_realised_pnl_and_show_exposure(viewer_api, book):
    [row] = viewer_api.get("/api/analytics/accounts").json()["accounts"]
    assert {k: row[k] for k in ("account", "currency", "starting_capital", "realised_pnl",
                                "balance", "open_positions", "unrealised_pnl", "equity",
                                "long_exposure", "short_exposure", "net_exposure",
                                "gross_exposure")} == {
        "account": "paper-eur", "currency": "EUR", "starting_capital": 1000.0,
        "realised_pnl": 135.0, "balance": 1135.0, "open_positions": 2, "unrealised_pnl": 30.0,
        "equity": 1165.0, "long_exposure": 220.0, "short_exposure": 190.0, "net_exposure": 30.0,
        "gross_exposure": 410.0}
    assert row["exposure_percent"] == pytest.approx(410 / 1165 * 100)


@time_machine.travel(NOW, tick=False)
def test_the_csv_export_has_every_filtered_trade_with_plain_numbers(viewer_api, book):
    response = viewer_api.get("/api/analytics/trades/export", {"strategy": "trend",
                                                               "period": "WEEK"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="trades-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["pnl"], r["closed_at"], r["strategy"]) for r in rows] == [
        ("-5", "2026-03-04T10:00:00Z", "trend"), ("10", "2026-03-04T09:00:00Z", "trend"),
        ("50", "2026-03-02T12:00:00Z", "trend")]
    assert viewer_api.get("/api/analytics/trades/export", {"side": "up"}).status_code == 400


def test_the_overview_needs_a_login(client, db):
    for path in ("/api/analytics/profit", "/api/analytics/strategies",
                 "/api/analytics/accounts", "/api/analytics/trades/export"):
        assert client.get(path).status_code == 401
