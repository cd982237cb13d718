"""check_timeouts: holding-time transitions and timeout closes, with time moved by time-machine."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from execution.models import Action, ActionKind, ActionState
from lifecycle import services
from lifecycle.models import Position, PositionEvent, PositionState
from lifecycle.services import timeout_pass_run
from lifecycle.signals import position_state_changed
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import ActionFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db

S = PositionState


def _pass_at(minutes: float, django_capture_on_commit_callbacks=None):
    with time_machine.travel(T0 + timedelta(minutes=minutes), tick=False):
        if django_capture_on_commit_callbacks is None:
            return timeout_pass_run()
        with django_capture_on_commit_callbacks(execute=True):
            return timeout_pass_run()


def _state(position) -> str:
    return Position.objects.get(pk=position.pk).state


def _transitions(position) -> list[tuple[str, str, str, str]]:
    return list(PositionEvent.objects.filter(position=position, kind="transition")
                .values_list("from_state", "to_state", "actor", "reason"))


@pytest.fixture
def position(strategy):
    return PositionFactory(strategy=strategy, opened_at=T0)


def test_at_179_59_a_position_is_still_open(position):
    result = _pass_at(179 + 59 / 60)
    assert _state(position) == S.OPEN
    assert (result.warned, result.timed_out, result.close_actions) == (0, 0, 0)
    assert not PositionEvent.objects.exists()


def test_at_180_00_it_enters_warning(position):
    result = _pass_at(180)
    stored = Position.objects.get(pk=position.pk)
    assert stored.state == S.WARNING
    assert stored.warning_at == stored.state_changed_at == T0 + timedelta(minutes=180)
    assert (result.warned, result.timed_out, result.close_actions) == (1, 0, 0)
    assert _transitions(position) == [
        ("OPEN", "WARNING", "timeout", "timeout: warning threshold of 180 min reached")]
    event = PositionEvent.objects.get(position=position)
    assert event.details == {"limit_minutes": 180}
    assert event.created_at == T0 + timedelta(minutes=180)
    assert not Action.objects.exists()


def test_at_239_59_a_warned_position_is_not_critical_yet(position):
    _pass_at(180)
    _pass_at(239 + 59 / 60)
    assert _state(position) == S.WARNING


def test_at_240_00_it_is_critical_with_exactly_one_emergency_close(
        position, dispatched, django_capture_on_commit_callbacks):
    _pass_at(180)
    result = _pass_at(240, django_capture_on_commit_callbacks)
    stored = Position.objects.get(pk=position.pk)
    assert stored.state == S.CRITICAL
    assert stored.critical_at == T0 + timedelta(minutes=240)
    assert (result.warned, result.timed_out, result.close_actions) == (0, 1, 1)
    action = Action.objects.get()
    assert (action.kind, action.state, action.position_id, action.reason, action.requested_by,
            action.idempotency_key) == (ActionKind.EMERGENCY_CLOSE, ActionState.PENDING,
                                        position.pk, "timeout", "timeout",
                                        f"timeout:{position.pk}:0")
    assert action.created_at == T0 + timedelta(minutes=240)
    assert dispatched == [action.pk]
    close_event = PositionEvent.objects.get(position=position, kind="close_requested")
    assert (close_event.actor, close_event.reason, close_event.details) == (
        "timeout", "timeout: close requested",
        {"action_id": action.pk, "kind": "emergency_close"})


def test_a_position_past_both_limits_gets_both_transitions_in_one_pass(position):
    result = _pass_at(300)
    assert _state(position) == S.CRITICAL
    assert (result.warned, result.timed_out, result.close_actions) == (1, 1, 1)
    assert [t[:2] for t in _transitions(position)] == [("OPEN", "WARNING"), ("WARNING", "CRITICAL")]
    assert Action.objects.filter(position=position).count() == 1


def test_repeated_passes_add_nothing(position, dispatched, django_capture_on_commit_callbacks):
    _pass_at(300, django_capture_on_commit_callbacks)
    before = (PositionEvent.objects.count(), Action.objects.count(), list(dispatched))
    for minutes in (300, 300.5, 301):
        result = _pass_at(minutes, django_capture_on_commit_callbacks)
        assert (result.warned, result.timed_out, result.close_actions) == (0, 0, 0)
    assert (PositionEvent.objects.count(), Action.objects.count(), dispatched) == before


def test_a_strategy_override_of_60_and_90_minutes_is_honoured(strategy):
    fast = StrategyFactory(name="scalper", account=strategy.account, live_trading={
        "lifecycle": {"warningThresholdMinutes": 60, "maxHoldingTimeMinutes": 90}})
    quick = PositionFactory(strategy=fast, opened_at=T0)
    default = PositionFactory(strategy=strategy, opened_at=T0)
    _pass_at(59)
    assert (_state(quick), _state(default)) == (S.OPEN, S.OPEN)
    _pass_at(60)
    assert (_state(quick), _state(default)) == (S.WARNING, S.OPEN)
    assert _transitions(quick)[0][3] == "timeout: warning threshold of 60 min reached"
    result = _pass_at(90)
    assert (_state(quick), _state(default)) == (S.CRITICAL, S.OPEN)
    assert result.close_actions == 1
    assert _transitions(quick)[1][3] == "timeout: max holding time of 90 min reached"
    assert list(Action.objects.values_list("position_id", flat=True)) == [quick.pk]


def test_a_disabled_automatic_timeout_moves_the_state_but_queues_nothing(strategy):
    manual = StrategyFactory(name="supervised-only", account=strategy.account, live_trading={
        "lifecycle": {"enableAutomaticTimeout": False}})
    position = PositionFactory(strategy=manual, opened_at=T0)
    result = _pass_at(240)
    assert _state(position) == S.CRITICAL
    assert (result.timed_out, result.close_actions) == (1, 0)
    assert not Action.objects.exists()


def test_site_wide_limits_come_from_the_live_trading_settings(settings, position):
    settings.LIVE_TRADING = {"lifecycle": {"warningThresholdMinutes": 30,
                                           "maxHoldingTimeMinutes": 45}}
    _pass_at(45)
    assert _state(position) == S.CRITICAL


def test_invalid_strategy_overrides_fall_back_to_the_site_limits(strategy):
    broken = StrategyFactory(name="broken", account=strategy.account)
    # Edited behind validation (start-up checks refuse it), as a bad data migration might.
    type(broken).objects.filter(pk=broken.pk).update(
        live_trading={"lifecycle": {"maxHoldingTimeMinutes": -5}})
    position = PositionFactory(strategy=broken, opened_at=T0)
    _pass_at(240)
    assert _state(position) == S.CRITICAL


def test_closing_and_closed_positions_are_left_alone(strategy):
    closing = PositionFactory(strategy=strategy, opened_at=T0, state=S.CLOSING)
    closed = PositionFactory(strategy=strategy, opened_at=T0, state=S.CLOSED,
                             closed_at=T0 + timedelta(minutes=10))
    result = _pass_at(500)
    assert (_state(closing), _state(closed)) == (S.CLOSING, S.CLOSED)
    assert (result.warned, result.timed_out, result.close_actions) == (0, 0, 0)


def test_a_critical_position_with_an_open_close_gets_no_second_one(position):
    _pass_at(180)
    risk_close = ActionFactory(position=position, reason="risk", state=ActionState.RUNNING)
    result = _pass_at(240)
    assert (result.timed_out, result.close_actions) == (1, 0)
    assert list(Action.objects.values_list("pk", flat=True)) == [risk_close.pk]


def test_after_a_failed_close_a_new_one_is_queued_after_a_growing_backoff(position):
    _pass_at(240)
    first = Action.objects.get()
    Action.objects.filter(pk=first.pk).update(state=ActionState.FAILED,
                                              finished_at=T0 + timedelta(minutes=241))
    # The first failure waits 1 minute, then 2, 4, 8 and at most 15 minutes.
    assert _pass_at(241.9).close_actions == 0
    assert _pass_at(242).close_actions == 1
    second = Action.objects.latest("id")
    assert second.idempotency_key == f"timeout:{position.pk}:1"
    assert _pass_at(242).close_actions == 0, "not more than one per pass, nor per attempt"
    Action.objects.filter(pk=second.pk).update(state=ActionState.FAILED,
                                               finished_at=T0 + timedelta(minutes=243))
    assert _pass_at(244.9).close_actions == 0
    assert _pass_at(245).close_actions == 1
    assert Action.objects.filter(position=position).count() == 3
    assert Action.objects.filter(position=position, state=ActionState.PENDING).count() == 1


def test_bulk_transitions_fire_the_signal_per_position_and_one_live_event_per_batch(
        strategy, monkeypatch):
    positions = PositionFactory.create_batch(3, strategy=strategy, opened_at=T0)
    received = []

    def receiver(sender, position, from_state, to_state, reason, actor, **kwargs):
        received.append((position.pk, position.strategy.name, position.state, from_state,
                         to_state, reason, actor))

    position_state_changed.connect(receiver)
    pushed = []
    monkeypatch.setattr(services, "broadcast_many", pushed.extend)
    try:
        _pass_at(180)
    finally:
        position_state_changed.disconnect(receiver)
    ids = sorted(p.pk for p in positions)
    assert received == [(pk, strategy.name, "WARNING", "OPEN", "WARNING",
                         "timeout: warning threshold of 180 min reached", "timeout")
                        for pk in ids]
    assert pushed == [("positions.state_changed", {
        "ids": ids, "from_state": "OPEN", "to_state": "WARNING", "actor": "timeout",
        "state_changed_at": T0 + timedelta(minutes=180)})]


def test_live_events_are_batched(strategy, monkeypatch):
    monkeypatch.setattr(services, "LIVE_BATCH_SIZE", 2)
    PositionFactory.create_batch(5, strategy=strategy, opened_at=T0)
    pushed = []
    monkeypatch.setattr(services, "broadcast_many", pushed.append)
    _pass_at(180)
    assert [[len(payload["ids"]) for _, payload in events] for events in pushed] == [[2, 2, 1]]


def test_many_created_actions_are_dispatched_through_fan_out_batches(
        strategy, monkeypatch, django_capture_on_commit_callbacks):
    from execution import services as execution_services
    from execution.tasks import dispatch_actions

    monkeypatch.setattr(execution_services, "DIRECT_DISPATCH_LIMIT", 2)
    monkeypatch.setattr(execution_services, "FAN_OUT_BATCH_SIZE", 2)
    batches = []
    monkeypatch.setattr(dispatch_actions, "apply_async",
                        lambda args, **kwargs: batches.append(args[0]))
    PositionFactory.create_batch(3, strategy=strategy, opened_at=T0)
    _pass_at(240, django_capture_on_commit_callbacks)
    assert batches == [sorted(Action.objects.values_list("pk", flat=True))[:2],
                       sorted(Action.objects.values_list("pk", flat=True))[2:]]


def test_a_pass_costs_the_same_number_of_queries_for_50_or_500_positions(
        strategy, django_assert_max_num_queries):
    first = Position.objects.bulk_create(PositionFactory.build_batch(50, strategy=strategy,
                                                                     opened_at=T0))
    with CaptureQueriesContext(connection) as small, django_assert_max_num_queries(12):
        assert _pass_at(240).close_actions == 50
    Position.objects.bulk_create(PositionFactory.build_batch(
        500, strategy=strategy, opened_at=T0 + timedelta(minutes=240)))
    with CaptureQueriesContext(connection) as large, django_assert_max_num_queries(12):
        assert _pass_at(480).close_actions == 500
    assert len(large) == len(small)
    assert PositionEvent.objects.filter(position__in=first).count() == 150
