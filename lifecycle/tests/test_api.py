"""The lifecycle API: tracked positions, timeouts, hand-over and close requests."""

from datetime import timedelta

import pytest
import time_machine
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from execution.models import Action, ActionState
from lifecycle.models import Position, PositionEvent
from lifecycle.services import timeout_pass_run
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import ActionFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(minutes=200)


@pytest.fixture
def book(strategy):
    """Positions at T0+200 min: one OPEN (fast strategy), one WARNING, one CLOSING, one CLOSED."""
    fast = StrategyFactory(name="fast", account=strategy.account, live_trading={
        "lifecycle": {"warningThresholdMinutes": 60, "maxHoldingTimeMinutes": 90}})
    fresh = PositionFactory(strategy=strategy, opened_at=T0 + timedelta(minutes=150),
                            symbol="ETH/USDT:USDT")
    warned = PositionFactory(strategy=strategy, opened_at=T0)
    late = PositionFactory(strategy=fast, opened_at=T0 + timedelta(minutes=100), state="CLOSING",
                           closing_at=T0 + timedelta(minutes=195))
    PositionFactory(strategy=strategy, opened_at=T0, state="CLOSED", closed_at=T0)
    with time_machine.travel(NOW, tick=False):
        timeout_pass_run()
    return {"fresh": fresh, "warned": warned, "late": late}


def test_reads_need_an_authenticated_user(book):
    response = APIClient().get("/api/lifecycle/tracked-positions")
    assert response.status_code in (401, 403)


def test_tracked_positions_show_age_and_countdowns_from_each_strategys_limits(viewer_api, book):
    with time_machine.travel(NOW, tick=False):
        response = viewer_api.get("/api/lifecycle/tracked-positions")
    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"OPEN": 1, "WARNING": 1, "CRITICAL": 0, "CLOSING": 1}
    assert body["count"] == 3
    rows = {row["id"]: row for row in body["results"]}
    assert [row["id"] for row in body["results"]] == [
        book["late"].pk, book["warned"].pk, book["fresh"].pk], "earliest timeout first"
    fresh = rows[book["fresh"].pk]
    assert (fresh["state"], fresh["age_minutes"], fresh["minutes_to_warning"],
            fresh["minutes_to_timeout"]) == ("OPEN", 50.0, 130.0, 190.0)
    assert fresh["timeout_due_at"] == "2026-03-02T14:30:00Z"
    warned = rows[book["warned"].pk]
    assert (warned["state"], warned["minutes_to_warning"], warned["minutes_to_timeout"]) == (
        "WARNING", -20.0, 40.0)
    late = rows[book["late"].pk]
    assert (late["strategy"], late["minutes_to_timeout"], late["close_action_id"]) == (
        "fast", -10.0, None)


def test_tracked_positions_filter_by_state_and_strategy(viewer_api, book):
    with time_machine.travel(NOW, tick=False):
        by_state = viewer_api.get("/api/lifecycle/tracked-positions", {"state": "WARNING"}).json()
        by_strategy = viewer_api.get("/api/lifecycle/tracked-positions", {"strategy": "fast"}).json()
        bad = viewer_api.get("/api/lifecycle/tracked-positions", {"state": "CLOSED"})
    assert [r["id"] for r in by_state["results"]] == [book["warned"].pk]
    assert [r["id"] for r in by_strategy["results"]] == [book["late"].pk]
    assert bad.status_code == 400 and "state" in bad.json()


def test_timeouts_list_how_late_each_position_is(viewer_api, book):
    ActionFactory(position=book["late"], state=ActionState.RUNNING)
    with time_machine.travel(NOW, tick=False):
        body = viewer_api.get("/api/lifecycle/timeouts").json()
    assert body["counts"] == {"WARNING": 1, "CRITICAL": 0, "CLOSING": 1}
    rows = [(r["id"], r["state"], r["minutes_past_warning"], r["minutes_past_timeout"],
             r["close_action_state"]) for r in body["results"]]
    assert rows == [(book["late"].pk, "CLOSING", 40.0, 10.0, "running"),
                    (book["warned"].pk, "WARNING", 20.0, -40.0, None)]
    assert body["results"][1]["warning_at"] == "2026-03-02T11:20:00Z"
    # a WARNING position has not timed out yet, a close can skip WARNING: the schema says so
    assert [(r["warning_at"], r["critical_at"]) for r in body["results"]] == [
        (None, None), ("2026-03-02T11:20:00Z", None)]
    item = SchemaGenerator().get_schema(public=True)["components"]["schemas"]["TimeoutPosition"]
    assert {name: item["properties"][name].get("nullable") for name in (
        "warning_at", "critical_at", "closing_at")} == {
        "warning_at": True, "critical_at": True, "closing_at": True}


HAND_OVER = {"strategy": None, "symbol": "BTC/USDT:USDT", "side": "short", "quantity": "0.25",
             "entry_price": "64000.5", "entry_fee": "1.2", "external_ref": "bot-42"}


def test_a_bot_hands_over_a_filled_position(staff_api, strategy):
    with time_machine.travel(NOW, tick=False):
        response = staff_api.post("/api/lifecycle/positions",
                              {**HAND_OVER, "strategy": strategy.name,
                               "opened_at": "2026-03-02T10:00:00Z"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["strategy"], body["side"], body["quantity"], body["entry_price"],
            body["entry_fee"], body["state"], body["source"], body["external_ref"],
            body["opened_at"]) == (strategy.name, "short", "0.250000000000", "64000.5000000000",
                                   "1.2000000000", "OPEN", "api", "bot-42",
                                   "2026-03-02T10:00:00Z")
    position = Position.objects.get(pk=body["id"])
    assert PositionEvent.objects.get(position=position).actor == "operator"


def test_handing_over_the_same_reference_twice_returns_the_same_position(staff_api, strategy):
    payload = {**HAND_OVER, "strategy": strategy.name}
    first = staff_api.post("/api/lifecycle/positions", payload, format="json")
    second = staff_api.post("/api/lifecycle/positions", payload, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Position.objects.count() == 1
    without_ref = {**payload, "external_ref": ""}
    assert staff_api.post("/api/lifecycle/positions", without_ref, format="json").status_code == 201
    assert staff_api.post("/api/lifecycle/positions", without_ref, format="json").status_code == 201


def test_a_reference_repeated_with_another_position_is_a_409_naming_the_fields(staff_api,
                                                                               strategy):
    payload = {**HAND_OVER, "strategy": strategy.name}
    first = staff_api.post("/api/lifecycle/positions", payload, format="json")
    other = staff_api.post("/api/lifecycle/positions", {
        **payload, "symbol": "ETH/USDT:USDT", "side": "long", "quantity": "3"}, format="json")
    assert (first.status_code, other.status_code) == (201, 409)
    assert other.json() == {
        "detail": "external_ref 'bot-42' was first used for a different request "
                  "(quantity: first '0.25', now '3'; side: first 'short', now 'long'; "
                  "symbol: first 'BTC/USDT:USDT', now 'ETH/USDT:USDT')",
        "code": "request_mismatch", "fields": ["quantity", "side", "symbol"]}
    # the same position written with other digits is the same request
    same = staff_api.post("/api/lifecycle/positions", {**payload, "quantity": "0.2500"},
                          format="json")
    assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])
    assert Position.objects.count() == 1


def test_a_bad_hand_over_gets_a_message_per_field(staff_api, strategy):
    with time_machine.travel(NOW, tick=False):
        response = staff_api.post("/api/lifecycle/positions", {
            "strategy": "nope", "side": "sideways", "quantity": "-1", "entry_price": "0",
            "opened_at": "2026-03-03T00:00:00Z"}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"strategy", "symbol", "side", "quantity", "entry_price", "opened_at"}
    assert errors["opened_at"] == ["cannot be in the future"]
    assert "does not exist" in errors["strategy"][0]
    assert not Position.objects.exists()


def test_writes_are_for_staff_only(viewer_api, strategy, book):
    assert viewer_api.post("/api/lifecycle/positions", {**HAND_OVER, "strategy": strategy.name},
                       format="json").status_code == 403
    assert viewer_api.post(f"/api/lifecycle/positions/{book['warned'].pk}/close").status_code == 403
    assert not Action.objects.exists()


def test_closing_a_position_queues_one_emergency_close(staff_api, book, staff_user):
    url = f"/api/lifecycle/positions/{book['fresh'].pk}/close"
    first = staff_api.post(url, {"note": "news spike"}, format="json")
    again = staff_api.post(url, {}, format="json")
    assert first.status_code == 202
    action = Action.objects.get()
    assert first.json() == {"position": book["fresh"].pk, "action_id": action.pk,
                            "action_state": "pending", "created": True}
    assert (again.status_code, again.json()["created"]) == (200, False)
    assert (action.reason, action.requested_by) == ("manual", staff_user.username)
    event = PositionEvent.objects.get(position=book["fresh"], kind="close_requested")
    assert event.reason == "manual: close requested — news spike"
    assert event.details["note"] == "news spike"


def test_closing_a_closed_position_is_a_conflict(staff_api, strategy):
    closed = PositionFactory(strategy=strategy, state="CLOSED", closed_at=T0, opened_at=T0)
    response = staff_api.post(f"/api/lifecycle/positions/{closed.pk}/close")
    assert response.status_code == 409
    assert response.json() == {"detail": f"position {closed.pk} is already CLOSED",
                               "code": "invalid_state_transition"}
    assert staff_api.post("/api/lifecycle/positions/999999/close").status_code == 404


def test_the_schema_documents_the_lifecycle_endpoints(viewer_api):
    schema = viewer_api.get("/api/schema/", {"format": "json"}).json()
    for path in ("/api/lifecycle/tracked-positions", "/api/lifecycle/timeouts",
                 "/api/lifecycle/positions", "/api/lifecycle/positions/{position_id}/close"):
        assert path in schema["paths"]
