"""The database itself refuses bad rows (runs on SQLite and on PostgreSQL).

Rows are written with ``objects.create`` / ``update`` (no model validation), so every
refusal here comes from a constraint in the schema.
"""

import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from execution.models import ActionKind, ActionState, ClientRequest, Order
from lifecycle.models import Position
from tradingsite.testing.factories import (
    ActionFactory,
    CandleFactory,
    OrderFactory,
    PositionFactory,
    RiskAlertFactory,
    TradeFactory,
)

pytestmark = pytest.mark.django_db


def _refused(make, constraint: str | None = None) -> None:
    """``make()`` raises IntegrityError; check constraints are named on both databases."""
    with pytest.raises(IntegrityError) as info, transaction.atomic():
        make()
    if constraint:
        assert constraint in str(info.value)


@pytest.mark.parametrize(("factory", "fields", "constraint"), [
    (PositionFactory, {"quantity": Decimal("-0.1"), "initial_quantity": Decimal("1")},
     "position_quantity_non_negative"),
    (PositionFactory, {"initial_quantity": Decimal("0")}, "position_initial_quantity_positive"),
    (PositionFactory, {"entry_price": Decimal("0")}, "position_entry_price_positive"),
    (PositionFactory, {"entry_fee": Decimal("-1")}, "position_entry_fee_non_negative"),
    (PositionFactory, {"state": "LIMBO"}, "position_state_valid"),
    (PositionFactory, {"side": "flat"}, "position_side_valid"),
    (PositionFactory, {"danger_level": "DOOMED"}, "position_danger_level_valid"),
    (PositionFactory, {"health_score": Decimal("100.01")}, "position_health_score_range"),
    (PositionFactory, {"state": "CLOSED", "closed_at": None}, "position_closed_has_time"),
    (OrderFactory, {"quantity": Decimal("0")}, "order_quantity_positive"),
    (OrderFactory, {"filled_quantity": Decimal("-0.5")}, "order_filled_non_negative"),
    (OrderFactory, {"quantity": Decimal("1"), "filled_quantity": Decimal("1.000000000001")},
     "order_filled_within_quantity"),
    (OrderFactory, {"fee": Decimal("-0.01")}, "order_fee_non_negative"),
    (OrderFactory, {"status": "lost"}, "order_status_valid"),
    (OrderFactory, {"side": "hold"}, "order_side_valid"),
    (OrderFactory, {"order_type": "limit", "price": Decimal("0")}, "order_limit_has_price"),
    (TradeFactory, {"quantity": Decimal("0")}, "trade_quantity_positive"),
    (TradeFactory, {"exit_price": Decimal("0")}, "trade_exit_price_positive"),
    (TradeFactory, {"fees": Decimal("-1")}, "trade_fees_non_negative"),
    (TradeFactory, {"exit_reason": "boredom"}, "trade_exit_reason_valid"),
    (CandleFactory, {"high": Decimal("98"), "low": Decimal("99")}, "candle_high_above_low"),
    (CandleFactory, {"volume": Decimal("-1")}, "candle_volume_non_negative"),
    (ActionFactory, {"state": "paused"}, "action_state_valid"),
    (ActionFactory, {"kind": ActionKind.EMERGENCY_CLOSE, "position": None},
     "close_action_has_position"),
    (RiskAlertFactory, {"severity": "FATAL"}, "alert_severity_valid"),
])
def test_a_row_breaking_a_check_constraint_is_refused(factory, fields, constraint):
    _refused(lambda: factory(**fields), constraint)


def test_a_trade_closed_before_it_opened_is_refused():
    now = timezone.now()
    _refused(lambda: TradeFactory(opened_at=now, closed_at=now - timezone.timedelta(seconds=1),
                                  holding_seconds=0),
             "trade_closed_after_opened")


def test_a_limit_order_without_a_price_is_refused():
    _refused(lambda: OrderFactory(order_type="limit", price=None), "order_limit_has_price")


def test_an_update_to_an_invalid_state_is_refused_too():
    position = PositionFactory()
    _refused(lambda: Position.objects.filter(pk=position.pk).update(state="GONE"),
             "position_state_valid")
    _refused(lambda: Order.objects.filter(pk=OrderFactory().pk).update(filled_quantity=Decimal("9")),
             "order_filled_within_quantity")


def test_a_client_order_id_is_used_once():
    OrderFactory(client_order_id="pf-000001")
    _refused(lambda: OrderFactory(client_order_id="pf-000001"))
    assert Order.objects.filter(client_order_id="pf-000001").count() == 1


def test_an_idempotency_key_is_used_once():
    ActionFactory(idempotency_key="close:42")
    _refused(lambda: ActionFactory(idempotency_key="close:42"))


def test_a_callers_key_names_one_request_per_scope(staff_user, viewer_user):
    def record(caller, scope="action", key="k-1"):
        return ClientRequest.objects.create(caller=caller, scope=scope, key=key, request={})

    record(staff_user)
    _refused(lambda: record(staff_user))
    _refused(lambda: record(staff_user, scope="elsewhere"), "client_request_scope_valid")
    record(staff_user, scope="order")
    record(viewer_user)
    assert ClientRequest.objects.filter(key="k-1").count() == 3


@pytest.mark.parametrize("second_kind", ActionKind.closing())
@pytest.mark.parametrize("first_state", ActionState.open())
def test_a_position_has_one_open_close_action(first_state, second_kind):
    position = PositionFactory()
    ActionFactory(position=position, kind=ActionKind.EMERGENCY_CLOSE, state=first_state)
    _refused(lambda: ActionFactory(position=position, kind=second_kind))


@pytest.mark.parametrize("finished", [ActionState.DONE, ActionState.FAILED, ActionState.CANCELLED])
def test_a_new_close_action_is_allowed_once_the_previous_one_finished(finished):
    position = PositionFactory()
    ActionFactory(position=position, state=finished)
    second = ActionFactory(position=position, kind=ActionKind.CLOSE)
    assert second.state == ActionState.PENDING
    assert position.actions.count() == 2


def test_cancel_actions_do_not_count_as_close_actions():
    order = OrderFactory()
    position = PositionFactory()
    ActionFactory(position=position)
    cancel = ActionFactory(position=position, kind=ActionKind.CANCEL_ORDER, order=order)
    assert cancel.pk is not None
    _refused(lambda: ActionFactory(kind=ActionKind.CANCEL_ORDER, position=None, order=None),
             "cancel_action_has_order")


def test_a_position_has_one_open_alert_per_kind():
    position = PositionFactory()
    RiskAlertFactory(position=position, kind="drawdown")
    _refused(lambda: RiskAlertFactory(position=position, kind="drawdown"))
    assert RiskAlertFactory(position=position, kind="volume_collapse").pk is not None


def test_a_resolved_alert_does_not_block_a_new_one_of_the_same_kind():
    position = PositionFactory()
    RiskAlertFactory(position=position, kind="drawdown", resolved_at=timezone.now())
    assert RiskAlertFactory(position=position, kind="drawdown").is_open


def test_one_candle_per_symbol_timeframe_and_time():
    candle = CandleFactory()
    _refused(lambda: CandleFactory(open_time=candle.open_time))
    assert CandleFactory(open_time=candle.open_time, timeframe="1h").pk is not None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_close_requests_leave_exactly_one_open_action():
    """Ten connections insert a close action for one position at once: the index admits one."""
    position = PositionFactory()
    start = threading.Barrier(10)
    outcomes: list[str] = []

    def request_close(n: int) -> None:
        try:
            start.wait(timeout=10)
            ActionFactory(position=position, idempotency_key=f"race-{n}",
                          kind=ActionKind.closing()[n % 3])
            outcomes.append("created")
        except IntegrityError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=request_close, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["created"] + ["refused"] * 9
    assert position.actions.filter(state__in=ActionState.open()).count() == 1
