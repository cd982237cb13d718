"""The operator's surfaces: the admin "Cancel order" action and the execution API."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from execution import tasks
from execution.models import Action, ActionKind, ActionState, Order, OrderStatus
from execution.pipeline import order_submit
from execution.services import action_process, order_advance, run_inline
from execution.tests.conftest import SYMBOL, configure

pytestmark = pytest.mark.django_db


@pytest.fixture
def resting_order(paper_account, paper_strategy, clock):
    configure(paper_account, faults=[{"kind": "stay_open"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    order_advance(order)
    return order


def _changelist_post(client, data):
    return client.post(reverse("admin:execution_order_changelist"),
                       {"action": "cancel_orders", "_selected_action": data.pop("ids"), **data})


def test_the_admin_asks_before_cancelling(client, staff_user, resting_order):
    client.force_login(staff_user)
    response = _changelist_post(client, {"ids": [resting_order.pk]})
    assert response.status_code == 200
    assert "Cancel orders: are you sure?" in response.content.decode()
    assert resting_order.client_order_id in response.content.decode()
    resting_order.refresh_from_db()
    assert resting_order.status == OrderStatus.OPEN


def test_the_admin_queues_a_cancel_after_confirmation_and_the_action_queue_cancels(
        client, staff_user, resting_order, paper, clock):
    client.force_login(staff_user)
    response = _changelist_post(client, {"ids": [resting_order.pk], "confirm": "yes"})
    assert response.status_code == 302
    action = Action.objects.get(order=resting_order)
    assert (action.kind, action.state, action.requested_by) == (
        ActionKind.CANCEL_ORDER, ActionState.PENDING, "operator")
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == [f"{resting_order.client_order_id}: cancel queued (action #{action.pk})."]
    assert paper.calls["cancel"] == 0  # nothing sent in the request

    action_process(action.pk, drive=run_inline(sleep=clock.shift))

    resting_order.refresh_from_db()
    assert resting_order.status == OrderStatus.CANCELLED
    assert resting_order.last_error == "cancel requested by operator"
    assert Action.objects.get(pk=action.pk).state == ActionState.DONE


def test_a_non_staff_user_cannot_reach_the_order_admin(client, viewer_user, resting_order):
    client.force_login(viewer_user)
    response = _changelist_post(client, {"ids": [resting_order.pk], "confirm": "yes"})
    assert response.status_code == 302  # to the admin login
    resting_order.refresh_from_db()
    assert resting_order.status == OrderStatus.OPEN


@pytest.fixture
def api():
    return APIClient()


def test_orders_are_listed_to_authenticated_users_only(api, viewer_user, resting_order):
    anonymous = api.get("/api/execution/orders")
    assert anonymous.status_code in (401, 403)  # 401 once token authentication comes first
    assert "results" not in anonymous.json()
    api.force_authenticate(viewer_user)
    body = api.get("/api/execution/orders", {"active": "true", "symbol": SYMBOL}).json()
    assert body["count"] == 1
    row = body["results"][0]
    assert (row["client_order_id"], row["status"], row["account"]) == (
        resting_order.client_order_id, "open", "paper-test")
    assert api.get("/api/execution/orders", {"status": "filled"}).json()["count"] == 0
    assert api.get(f"/api/execution/orders/{resting_order.pk}").json()["exchange_order_id"] == (
        "paper-1")


def test_only_staff_may_cancel_and_a_final_order_is_a_conflict(api, viewer_user, staff_user,
                                                               resting_order):
    url = f"/api/execution/orders/{resting_order.pk}/cancel"
    api.force_authenticate(viewer_user)
    assert api.post(url).status_code == 403
    api.force_authenticate(staff_user)
    response = api.post(url)
    assert response.status_code == 202
    assert (response.json()["kind"], response.json()["state"]) == ("cancel_order", "pending")
    action_process(response.json()["id"], drive=run_inline(sleep=lambda seconds: None))
    assert Order.objects.get(pk=resting_order.pk).status == "cancelled"
    again = api.post(url)
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_state_transition"


def test_staff_place_an_entry_order_that_the_workers_drive(api, staff_user, paper_strategy,
                                                           monkeypatch,
                                                           django_capture_on_commit_callbacks):
    scheduled = []
    monkeypatch.setattr(tasks.drive_order, "apply_async",
                        lambda args, countdown, queue: scheduled.append((args, countdown)))
    api.force_authenticate(staff_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/execution/orders/place", {
            "strategy": paper_strategy.name, "symbol": SYMBOL, "side": "buy",
            "quantity": "0.5", "expected_price": "50000"}, format="json")
    assert response.status_code == 202
    order = Order.objects.get(pk=response.json()["id"])
    assert (order.status, order.strategy, order.expected_price) == (
        OrderStatus.CREATED, paper_strategy, Decimal("50000"))
    assert scheduled == [((order.pk,), 0.0)]
    bad = api.post("/api/execution/orders/place", {
        "strategy": paper_strategy.name, "symbol": SYMBOL, "side": "buy", "quantity": "1",
        "order_type": "limit"}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"price": ["a limit order needs a price"]}


def test_the_action_queue_is_listed(api, viewer_user, paper_strategy):
    from lifecycle.services import position_request_close
    from tradingsite.testing.factories import PositionFactory

    action, _ = position_request_close(position=PositionFactory(strategy=paper_strategy),
                                       reason="risk", actor="risk")
    api.force_authenticate(viewer_user)
    body = api.get("/api/execution/actions", {"state": "pending"}).json()
    assert [row["id"] for row in body["results"]] == [action.pk]
    assert body["results"][0]["kind"] == "emergency_close"
