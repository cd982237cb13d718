"""Cancels are actions, and exchange work runs on the account's own queue.

The API answers at once with the queued ``cancel_order`` action; the action queue
marks the order and hands the cancel and its read-back to the account's queue. So
an account whose exchange hangs fills only its own queue: an action of another
account is not delayed by a second.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from lifecycle.models import Position
from lifecycle.services import position_open, position_request_close
from tests.integration.conftest import BTC, ETH, START, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


def place(operator, strategy, **fields) -> Order:
    body = {"strategy": strategy.name, "symbol": BTC, "side": "buy", "quantity": "0.5",
            "order_type": "limit", "price": "49000", **fields}
    response = operator.post("/api/execution/orders/place", body,
                             content_type="application/json")
    assert response.status_code == 202, response.content
    return Order.objects.get(pk=response.json()["id"])


def test_the_api_answers_202_with_the_queued_cancel_and_the_action_queue_cancels(
        platform, operator):
    account = paper_account()
    paper = paper_exchange_for(account)
    order = place(operator, strategy_on(account, "resting"))
    platform.run(until=START + timedelta(seconds=5))

    response = operator.post(f"/api/execution/orders/{order.pk}/cancel",
                             content_type="application/json")

    assert response.status_code == 202
    body = response.json()
    assert (body["kind"], body["state"], body["order"], body["requested_by"]) == (
        "cancel_order", "pending", order.pk, "operator")
    assert paper.calls["cancel"] == 0  # nothing was sent in the request
    again = operator.post(f"/api/execution/orders/{order.pk}/cancel",
                          content_type="application/json")
    assert (again.status_code, again.json()["id"]) == (200, body["id"])

    platform.run(until=START + timedelta(seconds=5))

    action = Action.objects.get(pk=body["id"])
    assert (action.state, action.result["status"], action.finished_at) == (
        "done", "cancelled", START + timedelta(seconds=5))
    order.refresh_from_db()
    assert (order.status, order.last_error) == ("cancelled", "cancel requested by operator")
    assert (paper.calls["cancel"], paper.orders["paper-1"].status) == (1, "canceled")
    final = operator.post(f"/api/execution/orders/{order.pk}/cancel",
                          content_type="application/json")
    assert (final.status_code, final.json()["code"]) == (409, "invalid_state_transition")


def test_a_hung_exchange_on_one_account_does_not_delay_an_action_on_another(
        platform, operator, clock):
    hung = paper_account("paper-hung")
    hung.order_queue = "orders.hung"
    hung.save(update_fields=["order_queue"])
    order = place(operator, strategy_on(hung, "stuck"))
    platform.run(until=START + timedelta(seconds=1))
    assert Order.objects.get(pk=order.pk).status == "open"
    # from now on every call to its exchange takes 10 minutes: its worker is stuck on it
    hung.paper_config = {**hung.paper_config, "latencyMs": 600_000}
    hung.save(update_fields=["paper_config"])
    stuck = paper_exchange_for(hung)
    stuck.sleep = clock.shift
    calls_before = sum(stuck.calls.values())
    platform.queues = {"celery"}  # the worker of orders.hung never comes back
    platform.schedule("execution.tasks.sweep_order_timeouts", 5)
    platform.schedule("execution.tasks.sweep_actions", 5)

    other = paper_account("paper-other")
    position = position_open(strategy=strategy_on(other, "fine"), symbol=ETH, side="long",
                             quantity=Decimal("2"), entry_price=Decimal("2400"))
    cancel = operator.post(f"/api/execution/orders/{order.pk}/cancel",
                           content_type="application/json")
    assert cancel.status_code == 202
    close, _ = position_request_close(position=position, reason="risk", actor="risk")
    platform.run(until=START + timedelta(seconds=1))

    close.refresh_from_db()
    assert (close.state, close.finished_at) == ("done", START + timedelta(seconds=1))
    assert Position.objects.get(pk=position.pk).state == "CLOSED"
    assert Action.objects.get(pk=cancel.json()["id"]).state == "running"  # waits on its queue
    assert Order.objects.get(pk=order.pk).status == "cancelling"

    # the order times out at 30 s: its sweep goes to the hung queue too
    platform.run(until=START + timedelta(seconds=40))

    assert sum(stuck.calls.values()) == calls_before  # nothing on the default queue called it
    assert {m.queue for m in platform.messages("expire_overdue_orders")} == {"orders.hung"}
    assert {m.queue for m in platform.messages("drive_order") if m.ran_at is None} == {
        "orders.hung"}
    assert platform.ran("expire_overdue_orders") == []
    assert paper_exchange_for(other).calls["place"] == 1
