"""The full from × to matrix of position_transition: allowed moves work, all others change nothing."""

from datetime import UTC, datetime
from itertools import product

import pytest
import time_machine
from django.forms.models import model_to_dict

from lifecycle.models import Position, PositionEvent, PositionState
from lifecycle.services import position_transition
from lifecycle.transitions import ALLOWED_TRANSITIONS, STATE_TIMESTAMP
from tradingsite.errors import InvalidStateTransition
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db

S = PositionState
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# The state machine of the issue, written out independently of the code under test.
EXPECTED_ALLOWED = {
    (S.OPEN, S.WARNING), (S.OPEN, S.CLOSING),
    (S.WARNING, S.CRITICAL), (S.WARNING, S.CLOSING),
    (S.CRITICAL, S.CLOSING),
    (S.CLOSING, S.CLOSED), (S.CLOSING, S.OPEN), (S.CLOSING, S.WARNING), (S.CLOSING, S.CRITICAL),
}
PAIRS = list(product(S.values, S.values))


def _position_in(state: str) -> Position:
    return PositionFactory(state=state, opened_at=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
                           closed_at=NOW if state == S.CLOSED else None)


def test_the_code_allows_exactly_the_documented_transitions():
    allowed = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert allowed == EXPECTED_ALLOWED


@pytest.mark.parametrize(("from_state", "to_state"),
                         [p for p in PAIRS if p not in EXPECTED_ALLOWED])
def test_an_invalid_transition_is_refused_and_leaves_row_and_events_unchanged(from_state,
                                                                              to_state):
    position = _position_in(from_state)
    row_before = model_to_dict(Position.objects.get(pk=position.pk))
    with time_machine.travel(NOW, tick=False), pytest.raises(InvalidStateTransition,
                                                             match="not a valid transition"):
        position_transition(position, to_state=to_state, reason="test", actor="tester")
    assert model_to_dict(Position.objects.get(pk=position.pk)) == row_before
    assert not PositionEvent.objects.filter(position=position).exists()
    assert position.state == from_state


@pytest.mark.parametrize(("from_state", "to_state"), sorted(EXPECTED_ALLOWED))
def test_an_allowed_transition_moves_the_row_and_records_one_event(from_state, to_state):
    position = _position_in(from_state)
    with time_machine.travel(NOW, tick=False):
        position_transition(position, to_state=to_state, reason="test", actor="tester")
    stored = Position.objects.get(pk=position.pk)
    assert stored.state == to_state
    assert stored.state_changed_at == NOW
    if to_state in STATE_TIMESTAMP:
        assert getattr(stored, STATE_TIMESTAMP[to_state]) == NOW
    assert list(PositionEvent.objects.filter(position=position).values_list(
        "kind", "from_state", "to_state", "reason", "actor", "created_at")) == [
        ("transition", from_state, to_state, "test", "tester", NOW)]
