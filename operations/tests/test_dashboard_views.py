"""The dashboard pages: login, first-paint data, staff-only controls."""

from __future__ import annotations

import json
import re

import pytest

from tradingsite.testing.factories import HealthSnapshotFactory, PositionFactory, RiskAlertFactory

pytestmark = pytest.mark.django_db


def _initial_state(response) -> dict:
    match = re.search(r'<script id="initial-state" type="application/json">(.*?)</script>',
                      response.content.decode(), re.S)
    assert match, "no initial-state script"
    return json.loads(match.group(1))


def test_the_dashboard_requires_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_a_viewer_can_log_in_through_the_login_page(client, viewer_user):
    response = client.post("/login/", {"username": "viewer", "password": "view-pass-123",
                                       "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_dashboard_starts_from_open_positions_alerts_and_the_halt(client, staff_user,
                                                                      strategy):
    open_one = PositionFactory(strategy=strategy, symbol="SOL/USDT:USDT")
    HealthSnapshotFactory(position=open_one)
    PositionFactory(strategy=strategy, state="CLOSED", closed_at=open_one.opened_at)
    alert = RiskAlertFactory(position=open_one)
    client.force_login(staff_user)
    response = client.get("/")
    assert response.status_code == 200
    state = _initial_state(response)
    assert [p["id"] for p in state["positions"]] == [open_one.pk]
    assert state["positions"][0]["health"]["components"]["drawdown"] == "90.00"
    assert [a["id"] for a in state["alerts"]] == [alert.pk]
    assert state["halt"]["trading_halted"] is False
    assert state["user"] == {"username": "operator", "is_staff": True}
    assert state["endpoints"]["halt"] == "/api/trading/halt/"
    assert b'id="halt-button"' in response.content


def test_viewers_get_no_halt_or_close_controls(client, viewer_user):
    client.force_login(viewer_user)
    response = client.get("/")
    assert b'id="halt-button"' not in response.content
    assert b'id="resume-button"' not in response.content
    assert _initial_state(response)["user"]["is_staff"] is False


def test_the_position_page_has_history_orders_and_actions(client, viewer_user, strategy):
    position = PositionFactory(strategy=strategy)
    HealthSnapshotFactory(position=position)
    client.force_login(viewer_user)
    response = client.get(f"/positions/{position.pk}/")
    assert response.status_code == 200
    state = _initial_state(response)
    assert state["position"]["id"] == position.pk
    assert len(state["health_history"]) == 1
    assert state["orders"] == [] and state["actions"] == []
    assert b'id="close-button"' not in response.content


def test_an_unknown_position_page_is_404(client, viewer_user):
    client.force_login(viewer_user)
    assert client.get("/positions/987654/").status_code == 404


def test_every_dashboard_asset_is_served_locally(client, viewer_user):
    client.force_login(viewer_user)
    html = client.get("/").content.decode()
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert client.get(src).status_code == 200, src


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_dashboard_pages_answer_405_to_other_methods(client, staff_user, strategy, method):
    position = PositionFactory(strategy=strategy)
    client.force_login(staff_user)
    for path in ("/", f"/positions/{position.pk}/"):
        response = getattr(client, method)(path)
        assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")
    assert client.head("/").status_code == 200
