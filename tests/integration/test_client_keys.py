"""Callers' idempotency keys cannot block a close: they never meet the server's keys.

A client used to be able to name its request ``timeout:<id>:0`` — the key the timeout
pass builds for position ``<id>``'s first close — and so turn that close into a no-op.
Callers' keys now live in their own table, per caller, and a key repeated for another
request is a 409, decided by one unique constraint even under concurrent requests.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.app.task import Task
from django.db import connection
from rest_framework.test import APIClient

from execution.models import Action, ClientRequest
from lifecycle.models import Position, Trade
from lifecycle.services import position_open, timeout_pass_run
from tests.integration.conftest import ETH, START, paper_account, strategy_on

LIMITS = {"lifecycle": {"warningThresholdMinutes": 10, "maxHoldingTimeMinutes": 20}}


def _open(strategy, quantity: str = "1") -> Position:
    return position_open(strategy=strategy, symbol=ETH, side="long", quantity=Decimal(quantity),
                         entry_price=Decimal("2500"), opened_at=START)


@pytest.mark.integration
@pytest.mark.django_db
def test_a_client_key_shaped_like_the_timeout_key_does_not_stop_the_timeout_close(
        platform, clock, staff_api):
    strategy = strategy_on(paper_account(), "keys", **LIMITS)
    one, seven = _open(strategy), _open(strategy, "2")
    platform.schedule("lifecycle.tasks.check_timeouts", 60)

    taken = staff_api.post("/api/actions/", {"position": one.pk,
                                             "idempotency_key": f"timeout:{seven.pk}:0"},
                           format="json")
    also = staff_api.post("/api/actions/", {"position": one.pk,
                                            "idempotency_key": f"close:{seven.pk}:0"},
                          format="json")
    platform.run(until=START + timedelta(minutes=20) - timedelta(seconds=1))
    clock.move_to(START + timedelta(minutes=20))
    timeout_pass_run()  # the pass queues position 7's close; no worker has run it yet
    timeout_close = Action.objects.get(position=seven)
    asked = staff_api.post(f"/api/lifecycle/positions/{seven.pk}/close", {}, format="json")
    platform.run(until=START + timedelta(minutes=22))

    first_close = Action.objects.get(position=one)
    assert (taken.status_code, taken.json()["position"]) == (201, one.pk)
    assert (also.status_code, also.json()["id"]) == (200, first_close.pk)
    assert (timeout_close.reason, timeout_close.requested_by, timeout_close.idempotency_key) == (
        "timeout", "timeout", f"timeout:{seven.pk}:0")
    # the close of position 7 answers with position 7's own (timeout) close
    assert asked.status_code == 200
    assert asked.json() == {"position": seven.pk, "action_id": timeout_close.pk,
                            "action_state": asked.json()["action_state"], "created": False}
    assert first_close.idempotency_key == f"close:{one.pk}:0"
    assert dict(Trade.objects.values_list("position_id", "exit_reason")) == {
        one.pk: "manual", seven.pk: "timeout"}
    assert set(Position.objects.values_list("state", flat=True)) == {"CLOSED"}
    assert sorted(ClientRequest.objects.values_list("key", "action")) == [
        (f"close:{seven.pk}:0", first_close.pk), (f"timeout:{seven.pk}:0", first_close.pk)]


REQUESTS = 20
ROUNDS = 5


def _post_together(user, key: str, positions: list[Position]) -> list[tuple[int, int, dict]]:
    """One request per position, each on its own thread and connection, all at one instant."""
    answers: list[tuple[int, int, dict]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(positions))

    def request(position: Position) -> None:
        client = APIClient()
        client.force_authenticate(user)
        try:
            barrier.wait(timeout=30)
            response = client.post("/api/actions/", {"position": position.pk,
                                                     "idempotency_key": key}, format="json")
            with lock:
                answers.append((position.pk, response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(position,)) for position in positions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_with_one_key_on_two_positions_get_one_action(
        monkeypatch, staff_user):
    """Half the requests name position A, half position B, all with the same key, at once.

    Exactly one request creates an action (201); the others for its position get that
    action (200); every request for the other position is a 409 naming ``position``.
    Five rounds, a fresh key and pair of positions each.
    """
    monkeypatch.setattr(Task, "apply_async", lambda *args, **kwargs: None)
    strategy = strategy_on(paper_account(), "concurrent")
    for round_ in range(ROUNDS):
        pair = [_open(strategy), _open(strategy)]
        key = f"same-key-{round_}"
        answers = _post_together(staff_user, key, [pair[n % 2] for n in range(REQUESTS)])

        [action] = Action.objects.filter(position__in=pair)
        winner = action.position_id
        loser = next(p.pk for p in pair if p.pk != winner)
        statuses = Counter((position, status) for position, status, _ in answers)
        assert statuses == {(winner, 201): 1, (winner, 200): REQUESTS // 2 - 1,
                            (loser, 409): REQUESTS // 2}
        for _, status, body in answers:
            if status == 409:
                assert (body["code"], body["fields"]) == ("request_mismatch", ["position"])
            else:
                assert (body["id"], body["position"]) == (action.pk, winner)
        assert list(ClientRequest.objects.filter(key=key).values_list("action", flat=True)) == [
            action.pk]
