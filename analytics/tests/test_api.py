"""The analytics API: authentication, validation, the four endpoints, the schema."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from tradingsite.testing.factories import OrderFactory, StrategyFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 6, 18, tzinfo=UTC)  # a Friday
ENDPOINTS = ["/api/analytics/performance", "/api/analytics/equity", "/api/analytics/trades",
             "/api/analytics/execution"]


@pytest.fixture
def client(viewer_user):
    api = APIClient()
    api.force_authenticate(viewer_user)
    return api


@pytest.fixture
def trades(make_trade):
    return [make_trade(100, NOW - timedelta(days=4), symbol="BTC/USDT", exit_reason="signal"),
            make_trade(-40, NOW - timedelta(days=2), symbol="ETH/USDT", exit_reason="timeout"),
            make_trade(25, NOW - timedelta(hours=2), symbol="BTC/USDT", exit_reason="risk")]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_requests_are_refused(url):
    assert APIClient().get(url).status_code in (401, 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_bad_token_is_refused(url):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api.get(url).status_code in (401, 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_writes_are_not_allowed_even_for_staff(url, staff_user):
    api = APIClient()
    api.force_authenticate(staff_user)
    assert api.post(url, {}).status_code == 405


@time_machine.travel(NOW, tick=False)
def test_performance_report(client, trades):
    response = client.get("/api/analytics/performance", {"period": "WEEK", "top": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["period"] == "WEEK" and body["trade_count"] == 3
    metrics = body["metrics"]
    assert metrics["trades"] == {"value": 3, "sample_size": 3}
    assert metrics["win_rate"]["value"] == pytest.approx(2 / 3)
    assert metrics["profit_factor"]["value"] == pytest.approx(125 / 40)
    assert metrics["sharpe_ratio"]["sample_size"] == 5  # Monday to Friday
    assert [t["pnl"] for t in body["top_trades"]] == [100.0, 25.0]
    assert body["top_trades"][0]["symbol"] == "BTC/USDT"
    assert body["cached"] is False
    json.loads(response.content, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


@time_machine.travel(NOW, tick=False)
def test_performance_filters(client, trades):
    body = client.get("/api/analytics/performance",
                      {"symbol": "BTC/USDT", "exit_reason": "risk"}).json()
    assert body["metrics"]["total_pnl"]["value"] == 25
    assert body["filters"] == {"strategy": None, "symbol": "BTC/USDT", "exit_reason": "risk"}
    body = client.get("/api/analytics/performance", {
        "start": (NOW - timedelta(days=3)).isoformat(), "end": NOW.isoformat()}).json()
    assert body["metrics"]["total_pnl"]["value"] == -15


@time_machine.travel(NOW, tick=False)
def test_no_losses_is_null_with_a_flag_not_infinity(client, make_trade):
    make_trade(10, NOW - timedelta(hours=1))
    body = client.get("/api/analytics/performance", {"period": "TODAY"}).json()
    assert body["metrics"]["profit_factor"] == {"value": None, "sample_size": 1,
                                                "undefined_reason": "no_losses"}
    assert "no_losses" in body["flags"]


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"period": "YEAR"}, "period", '"YEAR" is not a valid choice.'),
    ({"start": "yesterday"}, "start", None),
    ({"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "end",
     "Must be after start."),
    ({"strategy": "no-such-strategy"}, "strategy", "Unknown strategy 'no-such-strategy'."),
    ({"exit_reason": "panic"}, "exit_reason", '"panic" is not a valid choice.'),
    ({"top": "500"}, "top", None),
])
def test_bad_parameters_answer_400_naming_the_field(client, params, field, message):
    response = client.get("/api/analytics/performance", params)
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    if message:
        assert errors[field] == [message]


def test_bad_period_is_refused_by_every_endpoint(client):
    for url in ENDPOINTS:
        response = client.get(url, {"period": "DECADE"})
        assert response.status_code == 400, url
        assert "period" in response.json()


@time_machine.travel(NOW, tick=False)
def test_equity_curve(client, trades, account):
    body = client.get("/api/analytics/equity", {"period": "WEEK"}).json()
    assert body["start_equity"] == float(account.starting_capital)
    assert [p["equity"] for p in body["points"]] == [10_000, 10_100, 10_060, 10_085]
    assert body["points"][0]["time"] == "2026-03-02T00:00:00Z"
    daily = client.get("/api/analytics/equity", {"period": "WEEK", "resolution": "day"}).json()
    assert [p["equity"] for p in daily["points"]] == [10_100, 10_100, 10_060, 10_060, 10_085]
    assert client.get("/api/analytics/equity", {"points": 3}).status_code == 400


@time_machine.travel(NOW, tick=False)
def test_trade_list_is_paginated_filtered_and_ordered(client, trades):
    body = client.get("/api/analytics/trades", {"limit": 2}).json()
    assert body["count"] == 3
    assert [t["id"] for t in body["results"]] == [trades[2].id, trades[1].id]  # newest first
    assert body["results"][0]["strategy"] == trades[2].strategy.name
    assert body["results"][0]["pnl"] == "25.0000000000"
    body = client.get("/api/analytics/trades", {"symbol": "BTC/USDT", "ordering": "pnl"}).json()
    assert [t["id"] for t in body["results"]] == [trades[2].id, trades[0].id]
    body = client.get("/api/analytics/trades", {"period": "TODAY"}).json()
    assert [t["id"] for t in body["results"]] == [trades[2].id]
    body = client.get("/api/analytics/trades", {"exit_reason": "timeout"}).json()
    assert [t["id"] for t in body["results"]] == [trades[1].id]
    other = StrategyFactory()
    assert client.get("/api/analytics/trades", {"strategy": other.name}).json()["count"] == 0
    bad = client.get("/api/analytics/trades", {"exit_reason": "panic"})
    assert bad.status_code == 400 and "exit_reason" in bad.json()


@time_machine.travel(NOW, tick=False)
def test_execution_metrics(client, account):
    OrderFactory(account=account, status="filled", latency_ms=40,
                 slippage_percent=Decimal("0.2"), created_at=NOW - timedelta(hours=1))
    OrderFactory(account=account, status="rejected", latency_ms=60,
                 created_at=NOW - timedelta(hours=1))
    body = client.get("/api/analytics/execution", {"period": "TODAY"}).json()
    assert body["overall"]["success_rate"] == {"value": 0.5, "sample_size": 2}
    (row,) = body["accounts"]
    assert row["account"] == account.name
    assert row["latency_ms_mean"] == {"value": 50.0, "sample_size": 2}
    assert row["slippage_percent_worst"]["value"] == 0.2


def test_schema_documents_each_metric(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    metrics = schema["components"]["schemas"]["PerformanceMetrics"]["properties"]
    assert metrics["sharpe_ratio"]["description"].startswith("mean(r − rf) ÷ std(r − rf, ddof=1)")
    assert metrics["profit_factor"]["description"] == (
        "gross profit ÷ gross loss; null without losses (flag no_losses).")
    for path in ENDPOINTS:
        assert path in schema["paths"]
