"""`manage.py positions` and `manage.py close_position`."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from execution.models import Action
from lifecycle.models import PositionEvent
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_positions_lists_held_positions_with_minutes_to_timeout(strategy):
    warned = PositionFactory(strategy=strategy, opened_at=T0, state="WARNING",
                             health_score=Decimal("42.5"), danger_level="WARNING")
    fresh = PositionFactory(strategy=strategy, opened_at=T0 + timedelta(minutes=100),
                            side="short", quantity=Decimal("1.5"))
    PositionFactory(strategy=strategy, opened_at=T0, state="CLOSED", closed_at=T0)
    with time_machine.travel(T0 + timedelta(minutes=200), tick=False):
        lines = _run("positions").splitlines()
    assert lines[0].split() == ["id", "strategy", "symbol", "side", "qty", "state", "age", "min",
                                "to", "timeout", "health"]
    assert lines[1].split() == [str(warned.pk), strategy.name, "BTC/USDT:USDT", "long", "0.5",
                                "WARNING", "3h", "20m", "40", "43", "WARNING"]
    assert lines[2].split() == [str(fresh.pk), strategy.name, "BTC/USDT:USDT", "short", "1.5",
                                "OPEN", "1h", "40m", "140", "—"]
    assert lines[-1] == "OPEN: 1, WARNING: 1, CRITICAL: 0, CLOSING: 0"


def test_positions_never_prints_minus_zero_and_shows_the_one_danger_level(strategy):
    """The issue: "-0.0" minutes, and a WARNING position scored SAFE."""
    due = PositionFactory(strategy=strategy, opened_at=T0, state="WARNING",
                          health_score=Decimal("70.3"), danger_level="SAFE")
    with time_machine.travel(T0 + timedelta(minutes=240, seconds=2), tick=False):
        [row] = [line.split() for line in _run("positions").splitlines()
                 if line.startswith(str(due.pk))]
    assert row[8:] == ["0", "70", "WARNING"]


def test_positions_filters_by_state(strategy):
    closed = PositionFactory(strategy=strategy, opened_at=T0, state="CLOSED",
                             closed_at=T0 + timedelta(minutes=30))
    PositionFactory(strategy=strategy)
    lines = _run("positions", "--state", "CLOSED").splitlines()
    assert [line.split()[0] for line in lines[1:-2]] == [str(closed.pk)]
    assert lines[1].split()[6:9] == ["0h", "30m", "—"]
    assert lines[-1] == "CLOSED: 1"


def test_close_position_queues_a_manual_close_with_the_reason_on_its_history(strategy):
    position = PositionFactory(strategy=strategy)
    output = _run("close_position", str(position.pk), "--reason", "exchange maintenance")
    action = Action.objects.get()
    assert output.strip() == f"position {position.pk}: emergency close queued (action {action.pk})"
    assert action.reason == "manual" and action.requested_by.startswith("cli:")
    event = PositionEvent.objects.get(position=position)
    assert (event.kind, event.reason, event.details["note"]) == (
        "close_requested", "manual: close requested — exchange maintenance",
        "exchange maintenance")
    again = _run("close_position", str(position.pk), "--reason", "again")
    assert "already queued" in again and Action.objects.count() == 1


def test_close_position_refuses_closed_and_unknown_positions(strategy):
    closed = PositionFactory(strategy=strategy, state="CLOSED", closed_at=T0, opened_at=T0)
    with pytest.raises(CommandError, match="already CLOSED"):
        _run("close_position", str(closed.pk), "--reason", "x")
    with pytest.raises(CommandError, match="does not exist"):
        _run("close_position", "424242", "--reason", "x")
