"""The risk API: position health, the report, alerts and their acknowledgement."""

from datetime import timedelta

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from risk.models import RiskAlert
from risk.services import risk_check_run
from risk.tests.conftest import CLOSES, NOW, VOLUMES, add_candles, open_position
from tradingsite.testing.factories import RiskAlertFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def checked(frozen, risk_strategy):
    """Two positions after one check: a WARNING one and one with no market data."""
    warning = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    blind = open_position(risk_strategy, symbol="NEW/USDT", minutes_ago=10)
    risk_check_run()
    return warning, blind


def test_position_health_lists_held_positions_worst_first_with_components(viewer_api, checked):
    warning, blind = checked
    response = viewer_api.get("/api/health/position-health")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    first, second = body["results"]
    assert first == {
        "id": warning.pk, "strategy": "scalper", "symbol": "ETH/USDT:USDT", "side": "long",
        "state": "OPEN", "score": 59.65,
        "components": {"time_at_risk": 75.0, "drawdown": 60.0, "volume": 60.0,
                       "volatility": 50.0, "profitability": 47.67},
        "danger_level": "WARNING", "minutes_to_timeout": 180.0, "last_price": "99.9600000000",
        "unrealised_pnl": -0.28, "data_complete": True, "missing": [],
        "checked_at": "2026-01-05T12:00:00Z"}
    # 0.2·95.83 (10 min) + 0.3·100 + 0.2·50 + 0.15·50 (no candles: neutral) + 0.15·48.33
    assert second["id"] == blind.pk
    assert second["score"] == 73.92
    assert second["data_complete"] is False
    assert second["missing"] == ["volume", "volatility"]
    assert second["minutes_to_timeout"] == 230.0


def test_position_health_filters_by_danger_level_and_symbol(viewer_api, checked):
    warning, _ = checked
    assert [p["id"] for p in viewer_api.get("/api/health/position-health?danger_level=WARNING")
            .json()["results"]] == [warning.pk]
    assert viewer_api.get("/api/health/position-health?symbol=NEW/USDT").json()["count"] == 1
    assert viewer_api.get("/api/health/position-health?danger_level=CRITICAL").json()["count"] == 0


def test_an_unchecked_position_is_listed_without_a_score(viewer_api, frozen, risk_strategy):
    position = open_position(risk_strategy)
    [item] = viewer_api.get("/api/health/position-health").json()["results"]
    assert (item["id"], item["score"], item["components"], item["danger_level"]) == (
        position.pk, None, None, "")


def test_the_report_counts_levels_and_lists_worst_positions_and_open_alerts(viewer_api, checked):
    warning, _ = checked
    body = viewer_api.get("/api/health/report?worst=1").json()
    assert body["positions"] == 2
    assert body["counts"] == {"SAFE": 1, "WARNING": 1, "CRITICAL": 0, "UNSCORED": 0}
    assert [p["id"] for p in body["worst_positions"]] == [warning.pk]
    assert [(a["position"], a["kind"], a["severity"], a["symbol"]) for a in body["open_alerts"]] \
        == [(warning.pk, "danger_warning", "WARNING", "ETH/USDT:USDT")]
    assert body["checks"] == [{"strategy": "scalper", "last_checked_at": "2026-01-05T12:00:00Z",
                               "positions_checked": 2, "duration_ms": body["checks"][0][
                                   "duration_ms"]}]


def test_alerts_are_filterable(viewer_api, frozen, risk_strategy):
    position = open_position(risk_strategy)
    open_alert = RiskAlertFactory(position=position, kind="danger_warning")
    RiskAlertFactory(position=position, kind="collapse_volume", resolved_at=NOW,
                     last_seen=NOW - timedelta(hours=1))
    RiskAlertFactory(position=None, kind="exchange_unreachable", severity="CRITICAL")
    ids = lambda query: [a["id"] for a in viewer_api.get(f"/api/health/alerts{query}").json()["results"]]  # noqa: E731
    assert ids(f"?open=true&position={position.pk}") == [open_alert.pk]
    assert len(ids("?open=false")) == 1
    assert len(ids("?severity=CRITICAL")) == 1
    assert ids("?kind=danger_warning") == [open_alert.pk]
    assert len(ids("?strategy=scalper")) == 2
    detail = viewer_api.get(f"/api/health/alerts/{open_alert.pk}").json()
    assert (detail["kind"], detail["symbol"], detail["is_open"]) == (
        "danger_warning", "ETH/USDT:USDT", True)


def test_only_staff_may_acknowledge(viewer_api, staff_api, frozen, risk_strategy):
    alert = RiskAlertFactory(position=open_position(risk_strategy))
    assert viewer_api.post(f"/api/health/alerts/{alert.pk}/acknowledge").status_code == 403
    response = staff_api.post(f"/api/health/alerts/{alert.pk}/acknowledge")
    assert response.status_code == 200
    assert (response.json()["acknowledged"], response.json()["acknowledged_by"],
            response.json()["acknowledged_at"]) == (True, "operator", "2026-01-05T12:00:00Z")
    assert RiskAlert.objects.get().acknowledged_by == "operator"
    assert staff_api.post("/api/health/alerts/999999/acknowledge").status_code == 404


def test_the_api_requires_authentication(db):
    anonymous = APIClient()
    for url in ("/api/health/position-health", "/api/health/report", "/api/health/alerts"):
        assert anonymous.get(url).status_code in (401, 403)


def test_the_openapi_schema_documents_the_risk_endpoints(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    paths = yaml.safe_load(out.read_text())["paths"]
    for path in ("/api/health/position-health", "/api/health/report", "/api/health/alerts",
                 "/api/health/alerts/{id}", "/api/health/alerts/{id}/acknowledge"):
        assert path in paths
    assert "post" in paths["/api/health/alerts/{id}/acknowledge"]
