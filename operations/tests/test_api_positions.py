"""Positions and strategies as the read API returns them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from tradingsite.testing.factories import (
    HealthSnapshotFactory,
    PositionEventFactory,
    PositionFactory,
    StrategyFactory,
)

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(viewer_user):
    api = APIClient()
    api.force_authenticate(viewer_user)
    return api


@pytest.fixture
def book(strategy):
    """A long in profit with two health checks, a short closed, a short timed-out one."""
    long = PositionFactory(strategy=strategy, symbol="BTC/USDT:USDT", side="long",
                           quantity=Decimal("0.5"), entry_price=Decimal("50000"),
                           opened_at=NOW - timedelta(minutes=100), last_price=Decimal("50400"),
                           health_score=Decimal("71.5"), danger_level="SAFE")
    HealthSnapshotFactory(position=long, taken_at=NOW - timedelta(minutes=10), score=Decimal("80"))
    HealthSnapshotFactory(position=long, taken_at=NOW - timedelta(minutes=5),
                          score=Decimal("71.5"), time_score=Decimal("58.33"),
                          drawdown_score=Decimal("90"), volume_score=Decimal("70"),
                          volatility_score=Decimal("60"), profitability_score=Decimal("75"))
    closed = PositionFactory(strategy=strategy, symbol="ETH/USDT:USDT", side="short",
                             state="CLOSED", closed_at=NOW - timedelta(minutes=1),
                             opened_at=NOW - timedelta(minutes=50))
    late = PositionFactory(strategy=strategy, symbol="SOL/USDT:USDT", side="short",
                           quantity=Decimal("10"), entry_price=Decimal("100"),
                           opened_at=NOW - timedelta(minutes=250), state="CRITICAL",
                           last_price=Decimal("103"))
    return {"long": long, "closed": closed, "late": late}


def test_position_list_gives_prices_pnl_timings_and_the_newest_health(client, book):
    with time_machine.travel(NOW, tick=False):
        response = client.get("/api/positions/", {"active": "true"})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    by_symbol = {p["symbol"]: p for p in body["results"]}
    btc = by_symbol["BTC/USDT:USDT"]
    assert btc["mark_price"] == "50400.0000000000"
    assert btc["unrealised_pnl"] == "200.0000000000"
    assert btc["age_seconds"] == 6000
    assert btc["minutes_to_warning"] == 80.0
    assert btc["minutes_to_timeout"] == 140.0
    assert btc["timeout_due_at"] == "2026-03-02T14:20:00Z"
    assert btc["warning_due_at"] == "2026-03-02T13:20:00Z"
    assert btc["age_minutes"] == 100.0
    assert btc["close_action_id"] is None
    assert btc["health"] == {
        "id": btc["health"]["id"], "taken_at": "2026-03-02T11:55:00Z", "score": "71.50",
        "components": {"time_at_risk": "58.33", "drawdown": "90.00", "volume": "70.00",
                       "volatility": "60.00", "profitability": "75.00"},
        "danger_level": "SAFE", "price": None, "data_complete": True, "missing": []}
    sol = by_symbol["SOL/USDT:USDT"]
    assert sol["unrealised_pnl"] == "-30.0000000000"  # a short losing 3 × 10
    assert sol["minutes_to_timeout"] == -10.0
    assert sol["health"] is None
    assert "events" not in btc


def test_positions_filter_by_state_symbol_and_strategy(client, book, strategy):
    other = StrategyFactory(account=strategy.account)
    PositionFactory(strategy=other, symbol="BTC/USDT:USDT")
    ids = lambda params: sorted(p["id"] for p in client.get("/api/positions/", params).json()["results"])  # noqa: E731
    assert ids({"state": "CLOSED"}) == [book["closed"].pk]
    assert ids({"state": ["CLOSED", "CRITICAL"]}) == sorted([book["closed"].pk, book["late"].pk])
    assert ids({"active": "false"}) == [book["closed"].pk]
    assert len(ids({"symbol": "BTC/USDT:USDT"})) == 2
    assert ids({"symbol": "BTC/USDT:USDT", "strategy": strategy.name}) == [book["long"].pk]


def test_an_invalid_filter_value_is_a_400_with_the_field_named(client, book):
    response = client.get("/api/positions/", {"state": "SIDEWAYS"})
    assert response.status_code == 400
    assert list(response.json()) == ["state"]


def test_position_detail_carries_its_events_in_order(client, book):
    long = book["long"]
    PositionEventFactory(position=long, to_state="OPEN", reason="opened",
                         created_at=NOW - timedelta(minutes=100))
    PositionEventFactory(position=long, from_state="OPEN", to_state="WARNING",
                         reason="held 180 min", actor="timeout", created_at=NOW)
    response = client.get(f"/api/positions/{long.pk}/")
    assert response.status_code == 200
    assert [(e["from_state"], e["to_state"], e["actor"]) for e in response.json()["events"]] == [
        ("", "OPEN", "system"), ("OPEN", "WARNING", "timeout")]


def test_health_history_is_oldest_first(client, book):
    response = client.get(f"/api/positions/{book['long'].pk}/health/")
    assert response.status_code == 200
    assert [s["score"] for s in response.json()] == ["80.00", "71.50"]


def test_unknown_position_is_a_json_404(client):
    response = client.get("/api/positions/999999/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Position matches the given query."}


def test_pagination_is_limit_offset(client, book):
    body = client.get("/api/positions/", {"limit": 1, "ordering": "opened_at"}).json()
    assert body["count"] == 3 and len(body["results"]) == 1
    assert body["results"][0]["id"] == book["late"].pk
    assert "offset=1" in body["next"]


def test_strategies_show_effective_holding_limits(client, strategy):
    strategy.live_trading = {"lifecycle": {"maxHoldingTimeMinutes": 90,
                                           "warningThresholdMinutes": 60}}
    strategy.save()
    item = client.get("/api/strategies/").json()["results"][0]
    assert (item["name"], item["max_holding_time_minutes"], item["warning_threshold_minutes"]) == (
        strategy.name, 90, 60)
