"""The beat task is thin, idempotent and registered for the database scheduler."""

from datetime import timedelta

import pytest
import time_machine

from execution import tasks as execution_tasks
from execution.models import Action
from lifecycle import tasks
from lifecycle.tests.conftest import T0
from tradingsite.schedule import all_periodic_specs
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db


def test_check_timeouts_task_runs_one_pass_and_a_repeat_finds_nothing_left(strategy):
    PositionFactory.create_batch(2, strategy=strategy, opened_at=T0)
    with time_machine.travel(T0 + timedelta(minutes=240), tick=False):
        first = tasks.check_timeouts.apply().get()
        second = tasks.check_timeouts.apply().get()
    assert first == {"checked_at": "2026-03-02T12:00:00+00:00", "warned": 2, "timed_out": 2,
                     "close_actions": 2}
    assert second == {**first, "warned": 0, "timed_out": 0, "close_actions": 0}
    assert Action.objects.count() == 2


def test_the_fan_out_task_sends_one_process_action_per_id(dispatched):
    execution_tasks.dispatch_actions.apply(args=([5, 6, 7],))
    assert dispatched == [5, 6, 7]


def test_check_timeouts_runs_every_15_seconds_with_late_acknowledgement():
    spec = next(s for s in all_periodic_specs() if s.task == "lifecycle.tasks.check_timeouts")
    assert spec.every_seconds == 15
    assert tasks.check_timeouts.acks_late is True
