"""Emergency closes through the action queue, and the trading halt, from the API."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from execution.models import Action, ActionState, ClientRequest
from lifecycle.models import PositionEvent
from tradingsite.services import is_trading_halted
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def position(strategy):
    return PositionFactory(strategy=strategy)


def test_staff_queue_an_emergency_close_once_per_key(staff_api, position):
    body = {"kind": "emergency_close", "position": position.pk, "idempotency_key": "k-1",
            "note": "liquidity drying up"}
    first = staff_api.post("/api/actions/", body, format="json")
    assert first.status_code == 201
    action = Action.objects.get()
    assert first.json()["id"] == action.pk
    # the action's own key is the server's; the caller's key names it from ClientRequest
    assert (action.kind, action.state, action.reason, action.requested_by, action.idempotency_key) == (
        "emergency_close", "pending", "manual", "operator", f"close:{position.pk}:0")
    assert list(ClientRequest.objects.values_list("key", "scope", "action", "caller__username")) == [
        ("k-1", "action", action.pk, "operator")]
    event = PositionEvent.objects.get(position=position)
    assert event.kind == "close_requested"
    assert event.details["note"] == "liquidity drying up"
    again = staff_api.post("/api/actions/", body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == action.pk
    assert Action.objects.count() == 1


def test_the_idempotency_key_header_is_accepted(staff_api, position):
    response = staff_api.post("/api/actions/", {"position": position.pk}, format="json",
                          HTTP_IDEMPOTENCY_KEY="hdr-7")
    assert response.status_code == 201
    assert response.json()["kind"] == "emergency_close"
    again = staff_api.post("/api/actions/", {"position": position.pk}, format="json",
                           HTTP_IDEMPOTENCY_KEY="hdr-7")
    assert (again.status_code, again.json()["id"]) == (200, response.json()["id"])
    assert ClientRequest.objects.get().key == "hdr-7"


def test_a_second_request_without_key_returns_the_open_close(staff_api, position):
    first = staff_api.post("/api/actions/", {"position": position.pk}, format="json").json()
    second = staff_api.post("/api/actions/", {"position": position.pk, "reason": "risk"},
                        format="json")
    assert second.status_code == 200
    assert second.json()["id"] == first["id"]


def test_a_key_reused_for_another_position_is_a_409_naming_it(staff_api, position, strategy):
    staff_api.post("/api/actions/", {"position": position.pk, "idempotency_key": "dup"}, format="json")
    other = PositionFactory(strategy=strategy)
    response = staff_api.post("/api/actions/", {"position": other.pk, "idempotency_key": "dup"},
                          format="json")
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"idempotency key 'dup' was first used for a different request "
                  f"(position: first {position.pk}, now {other.pk})",
        "code": "request_mismatch", "fields": ["position"]}
    assert list(Action.objects.values_list("position", flat=True)) == [position.pk]


def test_a_key_repeated_with_another_reason_or_note_is_a_409(staff_api, position):
    body = {"position": position.pk, "idempotency_key": "k", "reason": "manual", "note": "a"}
    assert staff_api.post("/api/actions/", body, format="json").status_code == 201
    response = staff_api.post("/api/actions/", {**body, "reason": "risk", "note": "b"},
                              format="json")
    assert response.status_code == 409
    assert response.json()["fields"] == ["note", "reason"]
    assert response.json()["detail"] == (
        "idempotency key 'k' was first used for a different request "
        "(note: first 'a', now 'b'; reason: first 'manual', now 'risk')")
    assert Action.objects.count() == 1


def test_the_same_key_from_another_caller_is_another_request(staff_api, position,
                                                             django_user_model):
    staff_api.post("/api/actions/", {"position": position.pk, "idempotency_key": "mine"},
                   format="json")
    other = APIClient()
    other.force_authenticate(django_user_model.objects.create_user("second", is_staff=True))
    response = other.post("/api/actions/", {"position": position.pk, "idempotency_key": "mine",
                                            "note": "mine too"}, format="json")
    # not the first caller's request: that caller's key is invisible here; the position's
    # open close is the answer, and the second caller's key now names it too
    assert response.status_code == 200
    assert response.json()["id"] == Action.objects.get().pk
    assert ClientRequest.objects.count() == 2


def test_a_refused_request_leaves_its_key_free(staff_api, position):
    position.state = "CLOSED"
    position.closed_at = position.opened_at
    position.save()
    body = {"position": position.pk, "idempotency_key": "again"}
    assert staff_api.post("/api/actions/", body, format="json").status_code == 409
    assert not ClientRequest.objects.exists()


def test_a_key_replayed_after_the_action_finished_returns_it(staff_api, position):
    staff_api.post("/api/actions/", {"position": position.pk, "idempotency_key": "done"}, format="json")
    Action.objects.update(state=ActionState.DONE)
    position.state = "CLOSED"
    position.closed_at = position.opened_at
    position.save()
    replay = staff_api.post("/api/actions/", {"position": position.pk, "idempotency_key": "done"},
                        format="json")
    # The key is checked before the position's state: the client gets its action back.
    assert replay.status_code == 200
    assert replay.json()["state"] == "done"


def test_closing_a_closed_position_is_a_409(staff_api, position):
    position.state = "CLOSED"
    position.closed_at = position.opened_at
    position.save()
    response = staff_api.post("/api/actions/", {"position": position.pk}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": f"position {position.pk} is already CLOSED",
                               "code": "invalid_state_transition"}


def test_invalid_action_input_names_the_fields(staff_api):
    response = staff_api.post("/api/actions/", {"kind": "explode", "position": 424242}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "kind": ['"explode" is not a valid choice.'],
        "position": ['Invalid pk "424242" - object does not exist.'],
    }


def test_viewers_cannot_request_a_close(viewer_api, position):
    response = viewer_api.post("/api/actions/", {"position": position.pk}, format="json")
    assert response.status_code == 403
    assert not Action.objects.exists()


def test_staff_halt_and_resume_trading(staff_api):
    assert staff_api.get("/api/trading/halt/").json()["trading_halted"] is False
    halted = staff_api.post("/api/trading/halt/", {"reason": "exchange maintenance"}, format="json")
    assert halted.status_code == 200
    assert halted.json()["trading_halted"] is True
    assert halted.json()["reason"] == "exchange maintenance"
    assert halted.json()["halted_by"] == "operator"
    assert is_trading_halted()
    resumed = staff_api.post("/api/trading/resume/")
    assert resumed.status_code == 200 and resumed.json()["trading_halted"] is False
    assert not is_trading_halted()


def test_a_halt_needs_a_reason(staff_api):
    response = staff_api.post("/api/trading/halt/", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"reason": ["This field is required."]}


def test_viewers_read_the_halt_but_cannot_change_it(viewer_api):
    assert viewer_api.get("/api/trading/halt/").status_code == 200
    assert viewer_api.post("/api/trading/halt/", {"reason": "x"}, format="json").status_code == 403
    assert viewer_api.post("/api/trading/resume/").status_code == 403
    assert not is_trading_halted()


def test_a_body_that_is_not_an_object_is_a_400(staff_api):
    response = staff_api.post("/api/actions/", "AAA", format="json", HTTP_IDEMPOTENCY_KEY="x")
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}


def test_unknown_api_paths_answer_json_404(staff_api):
    response = staff_api.get("/api/positions/0.5/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
