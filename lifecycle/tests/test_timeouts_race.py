"""Two workers run the timeout pass on the same positions at the same instant (PostgreSQL)."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.db.models import Count

from execution.models import Action
from lifecycle.models import Position, PositionEvent
from lifecycle.services import timeout_pass_run
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import PositionFactory

POSITIONS = 500


def _run_concurrently(count: int) -> tuple[list, list]:
    barrier = threading.Barrier(count)
    results, errors = [], []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(timeout_pass_run())
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_on_500_timed_out_positions_create_each_close_once(strategy,
                                                                               dispatched):
    Position.objects.bulk_create(PositionFactory.build_batch(POSITIONS, strategy=strategy,
                                                             opened_at=T0))
    with time_machine.travel(T0 + timedelta(minutes=241), tick=False):
        results, errors = _run_concurrently(2)
    assert errors == []
    assert sum(r.warned for r in results) == POSITIONS
    assert sum(r.timed_out for r in results) == POSITIONS
    assert sum(r.close_actions for r in results) == POSITIONS
    assert Position.objects.filter(state="CRITICAL").count() == POSITIONS
    per_position = Counter(Action.objects.values_list("position_id", flat=True))
    assert len(per_position) == POSITIONS and set(per_position.values()) == {1}
    events = Counter(PositionEvent.objects.values_list("kind", "to_state"))
    assert events == {("transition", "WARNING"): POSITIONS, ("transition", "CRITICAL"): POSITIONS,
                      ("close_requested", ""): POSITIONS}
    duplicates = (PositionEvent.objects.values("position", "kind", "to_state")
                  .annotate(n=Count("id")).filter(n__gt=1))
    assert not duplicates.exists()
    assert sorted(dispatched) == sorted(Action.objects.values_list("pk", flat=True))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_queueing_closes_for_the_same_critical_positions_create_each_once(
        strategy, dispatched):
    """Both see the same committed CRITICAL positions: the unique constraints decide."""
    Position.objects.bulk_create(PositionFactory.build_batch(
        POSITIONS, strategy=strategy, opened_at=T0, state="CRITICAL",
        critical_at=T0 + timedelta(minutes=240)))
    with time_machine.travel(T0 + timedelta(minutes=241), tick=False):
        results, errors = _run_concurrently(2)
    assert errors == []
    assert sum(r.close_actions for r in results) == POSITIONS
    per_position = Counter(Action.objects.values_list("position_id", flat=True))
    assert len(per_position) == POSITIONS and set(per_position.values()) == {1}
    assert PositionEvent.objects.filter(kind="close_requested").count() == POSITIONS
    assert sorted(dispatched) == sorted(Action.objects.values_list("pk", flat=True))
