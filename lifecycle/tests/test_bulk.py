"""The portable set-based SQL helpers, on SQLite and PostgreSQL alike."""

import pytest
from django.db.models import F

from execution.models import Action, ActionKind
from lifecycle.models import Position, PositionEvent
from tradingsite.sql import InArray, insert_select, update_returning_pks
from tradingsite.testing.factories import ActionFactory, PositionFactory

pytestmark = pytest.mark.django_db


def test_in_array_filters_by_a_list_of_ids(strategy):
    positions = PositionFactory.create_batch(4, strategy=strategy)
    wanted = [positions[0].pk, positions[2].pk]
    assert sorted(Position.objects.filter(InArray("pk", wanted)).values_list("pk", flat=True)) == (
        wanted)
    assert not Position.objects.filter(InArray("pk", [])).exists()


def test_update_returning_pks_says_which_rows_changed(strategy):
    open_ones = PositionFactory.create_batch(2, strategy=strategy)
    PositionFactory(strategy=strategy, state="WARNING")
    changed = update_returning_pks(Position.objects.filter(state="OPEN"), state="WARNING")
    assert sorted(changed) == sorted(p.pk for p in open_ones)
    assert update_returning_pks(Position.objects.filter(state="OPEN"), state="WARNING") == []


def test_insert_select_fills_defaults_and_returns_only_inserted_rows(strategy):
    positions = PositionFactory.create_batch(3, strategy=strategy)
    ActionFactory(position=positions[1], kind=ActionKind.EMERGENCY_CLOSE)  # an open close
    rows = insert_select(Action, Position.objects.filter(strategy=strategy).order_by("pk"), {
        "kind": ActionKind.CLOSE, "position_id": F("pk"), "reason": "signal",
        "idempotency_key": F("symbol"),
    }, ignore_conflicts=True, returning=("position_id",))
    # positions[1] already has an open close; the other two share one key: one wins.
    assert rows == [(positions[0].pk,)]
    action = Action.objects.get(position=positions[0])
    assert (action.state, action.attempts, action.result, action.error, action.requested_by) == (
        "pending", 0, {}, "", "system")
    assert action.created_at is not None and action.updated_at is not None


def test_insert_select_without_returning_inserts_every_row(strategy):
    positions = PositionFactory.create_batch(2, strategy=strategy)
    assert insert_select(PositionEvent, Position.objects.filter(strategy=strategy), {
        "position_id": F("pk"), "kind": "note", "reason": "bulk note"}) == []
    assert sorted(PositionEvent.objects.values_list("position_id", "kind", "actor")) == sorted(
        (p.pk, "note", "system") for p in positions)


def test_insert_select_ignoring_conflicts_works_on_an_unfiltered_unordered_source(strategy):
    position = PositionFactory(strategy=strategy)
    rows = insert_select(Action, Position.objects.order_by(), {
        "kind": ActionKind.CLOSE, "position_id": F("pk"), "idempotency_key": "only-one"},
        ignore_conflicts=True, returning=("position_id",))
    assert rows == [(position.pk,)]
