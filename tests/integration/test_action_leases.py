"""Actions are resumable from any step: a worker killed mid-action is replaced within
``actionLeaseSeconds`` (15 s by default), not minutes later.

The worker is killed by raising out of the task at a chosen point: its message is
gone (the broker would hold it until its visibility timeout), and what it committed
stays. The action sweep runs every 5 s, as beat runs it in production.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution import services
from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from execution.pipeline import order_submit
from lifecycle import close_actions
from lifecycle.models import Position
from lifecycle.services import position_open, position_request_close
from tests.integration.conftest import BTC, START, inject_faults, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


class WorkerKilled(Exception):
    """The worker process died here (kill -9)."""


@pytest.fixture
def held():
    account = paper_account()
    position = position_open(strategy=strategy_on(account, "lease"), symbol=BTC, side="long",
                             quantity=Decimal("0.4"), entry_price=Decimal("48000"),
                             opened_at=START - timedelta(hours=1))
    return account, position


def kill_once(monkeypatch, name, module=services):
    """Make ``<module>.<name>`` kill the worker the first time it is called."""
    real = getattr(module, name)
    calls = []

    def dies(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise WorkerKilled(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, dies)
    return calls


def test_an_action_killed_between_its_orders_final_write_and_its_settle_is_settled_at_15_s(
        platform, monkeypatch, held):
    account, position = held
    kill_once(monkeypatch, "order_actions_settle")
    platform.schedule("execution.tasks.sweep_actions", 5)
    action, _ = position_request_close(position=position, reason="risk", actor="risk")

    with pytest.raises(WorkerKilled):
        platform.run(until=START)
    order = Order.objects.get(action=action)
    assert (order.status, order.finalized_at) == ("filled", START)
    assert Action.objects.get(pk=action.pk).state == "running"  # killed before the settle

    platform.run(until=START + timedelta(seconds=10))
    assert Action.objects.get(pk=action.pk).state == "running"  # its lease holds until 15 s
    platform.run(until=START + timedelta(seconds=15))

    action.refresh_from_db()
    assert (action.state, action.attempts, action.finished_at) == (
        "done", 2, START + timedelta(seconds=15))
    assert action.result["order"] == f"close-{action.pk}"
    assert paper_exchange_for(account).calls["place"] == 1
    assert Position.objects.get(pk=position.pk).state == "CLOSED"


def test_a_close_killed_between_begin_close_and_order_submit_is_sent_at_15_s(
        platform, monkeypatch, held):
    account, position = held
    kill_once(monkeypatch, "order_submit", close_actions)
    platform.schedule("execution.tasks.sweep_actions", 5)
    action, _ = position_request_close(position=position, reason="timeout", actor="timeout")

    with pytest.raises(WorkerKilled):
        platform.run(until=START)
    assert Position.objects.get(pk=position.pk).state == "CLOSING"
    assert not Order.objects.exists()  # CLOSING without an order

    platform.run(until=START + timedelta(seconds=15))

    order = Order.objects.get(action=action)
    assert (order.client_order_id, order.status, order.submitted_at) == (
        f"close-{action.pk}", "filled", START + timedelta(seconds=15))
    paper = paper_exchange_for(account)
    assert [o.client_order_id for o in paper.orders.values()] == [f"close-{action.pk}"]
    action.refresh_from_db()
    assert (action.state, action.attempts) == ("done", 2)
    assert Position.objects.get(pk=position.pk).trade.closed_at == START + timedelta(seconds=15)


def test_a_running_action_whose_order_is_still_active_is_not_taken_over(platform, held):
    account, position = held
    inject_faults(account, {"kind": "stay_open"})
    platform.schedule("execution.tasks.sweep_actions", 5)
    action, _ = position_request_close(position=position, reason="risk", actor="risk",
                                       kind="close")

    platform.run(until=START + timedelta(seconds=29))

    action.refresh_from_db()
    # polled every second: its lease ran out at 15 s, but the order carries it on
    assert (action.state, action.attempts) == ("running", 1)
    assert action.lease_until == START + timedelta(seconds=15)
    assert len(platform.ran("drive_order")) == 29
    assert Order.objects.filter(action=action).count() == 1


def test_a_stale_copy_never_overwrites_the_order_a_live_worker_sent(clock, held):
    """The benign variant of the recovery race: attempts=0 and no submitted_at on an order
    that was sent must not occur."""
    from execution.exchanges.base import OrderSnapshot
    from execution.pipeline import OrderMoved, order_not_found, order_sync

    account, _ = held
    order = order_submit(account=account, symbol=BTC, side="buy", quantity=Decimal("0.1"))
    stale = Order.objects.get(pk=order.pk)  # read before the live worker claimed it
    sent = services.run_inline(sleep=lambda seconds: None)(order)
    assert (sent.status, sent.attempts, sent.submitted_at) == ("filled", 1, START)

    with pytest.raises(OrderMoved):
        order_not_found(stale)
    with pytest.raises(OrderMoved):
        order_sync(stale, OrderSnapshot(id="paper-1", client_order_id=order.client_order_id,
                                        symbol=BTC, side="buy", order_type="market",
                                        status="open", amount=Decimal("0.1")))

    row = Order.objects.get(pk=order.pk)
    assert (row.status, row.attempts, row.submitted_at, row.exchange_order_id) == (
        "filled", 1, START, "paper-1")
