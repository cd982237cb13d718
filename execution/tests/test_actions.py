"""The action queue: idempotent closes and cancels, redeliveries, dead workers, the sweep."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from execution import tasks
from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, ActionKind, ActionState, Order, OrderStatus
from execution.pipeline import order_submit
from execution.selectors import actions_due
from execution.services import (
    action_claim,
    action_process,
    actions_sweep,
    order_advance,
    order_request_cancel,
    orders_expire_overdue,
    run_inline,
)
from execution.tests.conftest import SYMBOL, configure
from lifecycle.models import Position, PositionState, Trade
from lifecycle.services import position_begin_close, position_request_close
from tradingsite.errors import InvalidStateTransition
from tradingsite.testing.factories import PositionFactory


def _position(strategy, quantity="0.5"):
    return PositionFactory(strategy=strategy, symbol=SYMBOL, quantity=Decimal(quantity),
                           entry_price=Decimal("49000"))


@pytest.mark.django_db
def test_repeated_close_requests_make_one_action_and_one_order(paper_account, paper_strategy,
                                                               paper, sleep):
    position = _position(paper_strategy)
    drive = run_inline(sleep=sleep)
    requests = [position_request_close(position=position, reason="risk", actor=actor)
                for actor in ("timeout", "risk", "operator")]
    actions = {action.pk for action, _ in requests}
    assert [created for _, created in requests] == [True, False, False]
    for action, _ in requests:
        action_process(action.pk, drive=drive)
        action_process(action.pk, drive=drive)  # a redelivered task

    assert len(actions) == 1
    order = Order.objects.get(position=position)
    assert order.client_order_id == f"close-{actions.pop()}"
    assert (order.side, order.quantity, order.reduce_only) == ("sell", Decimal("0.5"), True)
    assert paper.calls["place"] == 1
    position.refresh_from_db()
    assert position.state == PositionState.CLOSED
    assert position.close_reason == "risk"
    assert position.close_requested_by == "timeout"
    # 0.5 × (49 995 − 49 000) − exit fee 0.5 × 49 995 × 0.055 % (13.748625)
    assert position.trade.pnl == Decimal("483.751375")


@pytest.mark.django_db
def test_the_action_records_its_result(paper_account, paper_strategy, paper, sleep):
    position = _position(paper_strategy)
    action, _ = position_request_close(position=position, reason="manual", actor="operator")

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    trade = Trade.objects.get(position=position)
    assert action.state == ActionState.DONE
    assert action.attempts == 1
    assert action.result == {
        "order": f"close-{action.pk}", "status": "filled", "filled": "0.5",
        "average_price": "49995", "slippage_percent": "0.01",
        "trade": trade.pk, "pnl": "483.751375", "exit_price": "49995"}
    assert action.error == ""
    assert action.finished_at is not None


@pytest.mark.django_db
def test_a_close_the_exchange_rejects_fails_the_action_and_returns_the_position(
        paper_account, paper_strategy, sleep):
    configure(paper_account, faults=[{"kind": "reject", "message": "reduce-only rule not satisfied"}])
    position = _position(paper_strategy)
    action, _ = position_request_close(position=position, reason="risk", actor="risk")

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    assert action.state == ActionState.FAILED
    assert action.error == "reduce-only rule not satisfied"
    position.refresh_from_db()
    assert position.state == PositionState.OPEN
    assert position.close_reason == ""
    assert list(position.events.values_list("kind", "to_state"))[-1] == ("transition", "OPEN")
    # a new request is possible once the failed one is finished
    sleep(1)
    again, created = position_request_close(position=position, reason="risk", actor="risk")
    assert created and again.pk != action.pk


@pytest.mark.django_db
def test_an_action_for_a_closed_position_is_done_without_an_order(paper_account, paper_strategy,
                                                                  paper, sleep):
    position = _position(paper_strategy)
    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    Position.objects.filter(pk=position.pk).update(state=PositionState.CLOSED,
                                                   closed_at=position.opened_at)

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    assert action.state == ActionState.DONE
    assert action.result == {"position": "already closed"}
    assert Order.objects.count() == 0
    assert sum(paper.calls.values()) == 0


@pytest.mark.django_db
def test_a_running_action_whose_worker_died_after_sending_is_finished_by_its_order(
        paper_account, paper_strategy, clock):
    """The worker claimed the action, began the close, sent the order and died: the active
    order carries the action on (the order-timeout sweep steps it), nobody sends twice."""
    paper = configure(paper_account, faults=[{"kind": "drop_after_accept"}])
    position = _position(paper_strategy)
    action, _ = position_request_close(position=position, reason="timeout", actor="timeout")
    claimed = action_claim(action.pk)
    position_begin_close(position, reason="timeout", actor="timeout")
    order = order_submit(account=paper_account, strategy=paper_strategy, position=position,
                         action=claimed, symbol=SYMBOL, side="sell", quantity=Decimal("0.5"),
                         purpose="emergency_close", reduce_only=True,
                         client_order_id=f"close-{action.pk}")
    order_advance(order)  # accepted, answer lost; then the worker is killed
    clock.shift(15)  # actionLeaseSeconds: the lease ran out, but its order is active
    assert actions_due() == []

    clock.shift(15)
    assert orders_expire_overdue(schedule=lambda step: None) == 1

    claimed.refresh_from_db()
    assert (claimed.state, claimed.attempts) == (ActionState.DONE, 1)
    assert paper.calls["place"] == 1
    assert len(paper.orders_with_client_id(f"close-{action.pk}")) == 1
    assert Order.objects.filter(position=position).count() == 1
    position.refresh_from_db()
    assert position.state == PositionState.CLOSED


@pytest.mark.django_db
def test_a_pending_action_nobody_picked_up_is_run_by_the_sweep(paper_account, paper_strategy,
                                                              paper, clock):
    position = _position(paper_strategy)
    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    assert actions_sweep(drive=run_inline(sleep=clock.shift)) == 0  # too young: on-commit task

    clock.shift(5)
    assert actions_sweep(drive=run_inline(sleep=clock.shift)) == 1

    action.refresh_from_db()
    assert action.state == ActionState.DONE
    assert actions_sweep(drive=run_inline(sleep=clock.shift)) == 0


@pytest.mark.django_db
def test_a_cancel_action_cancels_the_order_and_records_the_outcome(paper_account, paper_strategy,
                                                                  clock):
    paper = configure(paper_account, faults=[{"kind": "stay_open"}])
    order = order_submit(account=paper_account, strategy=paper_strategy, symbol=SYMBOL,
                         side="buy", quantity=Decimal("0.5"))
    order_advance(order)
    action, created = order_request_cancel(order, actor="operator")
    assert created
    assert order_request_cancel(order, actor="operator") == (action, False)

    action = action_process(action.pk, drive=run_inline(sleep=clock.shift))

    assert action.kind == ActionKind.CANCEL_ORDER
    assert action.state == ActionState.DONE
    assert action.result["status"] == "cancelled"
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert paper.calls["cancel"] == 1


@pytest.mark.django_db(transaction=True)
def test_the_process_action_task_is_started_on_commit_and_closes_the_position(
        paper_account, paper_strategy, paper, monkeypatch):
    started = []
    monkeypatch.setattr(tasks.process_action, "delay", lambda pk: started.append(pk))
    position = _position(paper_strategy)

    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    assert started == [action.pk]
    tasks.process_action(action.pk)
    tasks.process_action(action.pk)  # redelivered after a lost acknowledgement

    action.refresh_from_db()
    assert action.state == ActionState.DONE
    assert Order.objects.filter(position=position).count() == 1
    assert paper.calls["place"] == 1


@pytest.mark.django_db
def test_the_sweep_tasks_run(paper_account, paper_strategy, paper, clock):
    position = _position(paper_strategy)
    position_request_close(position=position, reason="risk", actor="risk")
    clock.shift(6)
    assert tasks.sweep_actions() == 1
    assert tasks.sweep_order_timeouts() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_emergency_close_requests_place_one_close_order(
        paper_account, paper_strategy, monkeypatch):
    monkeypatch.setattr(tasks.process_action, "delay", lambda pk: None)
    position = _position(paper_strategy)
    paper = paper_exchange_for(paper_account)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def request_and_process(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            try:
                action, _ = position_request_close(
                    position=Position.objects.get(pk=position.pk), reason="risk",
                    actor=f"worker-{i}")
            except InvalidStateTransition:
                outcomes.append("already closed")
                return
            action = action_process(action.pk, drive=run_inline(sleep=lambda s: None))
            outcomes.append(action.state)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request_and_process, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(outcomes) == 20
    assert Order.objects.filter(position=position).count() == 1
    assert paper.calls["place"] == 1
    assert Action.objects.filter(position=position, order__isnull=True).exclude(
        result={"position": "already closed"}).count() == 1
    position.refresh_from_db()
    assert position.state == PositionState.CLOSED
    assert Trade.objects.filter(position=position).count() == 1
    assert timedelta(0) <= position.closed_at - position.opened_at


@pytest.mark.django_db
def test_a_close_that_cannot_be_recorded_returns_the_position(paper_account, paper_strategy,
                                                              sleep):
    position = _position(paper_strategy)
    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    paper_account.enabled = False
    paper_account.save()

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    assert action.state == ActionState.FAILED
    assert action.error == "exchange account paper-test is disabled"
    position.refresh_from_db()
    assert position.state == PositionState.OPEN


@pytest.mark.django_db
def test_an_unknown_exchange_id_fails_the_close_order_at_once(paper_strategy, sleep):
    from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

    account = ExchangeAccountFactory(name="typo", exchange_id="bybitt")
    position = _position(StrategyFactory(account=account))
    action, _ = position_request_close(position=position, reason="risk", actor="risk")

    action = action_process(action.pk, drive=run_inline(sleep=sleep))

    order = Order.objects.get(action=action)
    assert (order.status, order.error_code) == (OrderStatus.FAILED, "config")
    assert order.last_error == "unknown ccxt exchange id 'bybitt'"
    assert action.state == ActionState.FAILED
    position.refresh_from_db()
    assert position.state == PositionState.OPEN


def test_the_execution_tasks_are_registered_and_acknowledged_late():
    from tradingsite.celery import app

    names = {"execution.tasks.process_action", "execution.tasks.drive_order",
             "execution.tasks.sweep_actions", "execution.tasks.sweep_order_timeouts",
             "execution.tasks.expire_overdue_orders", "execution.tasks.refresh_candles"}
    assert {name for name in app.tasks if name.startswith("execution.")} == names
    assert all(app.tasks[name].acks_late for name in names)
    assert {spec.task for spec in tasks.PERIODIC_TASKS} == names - {
        "execution.tasks.process_action", "execution.tasks.drive_order",
        "execution.tasks.expire_overdue_orders"}
