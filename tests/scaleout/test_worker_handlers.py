"""A fill in a real worker process reaches lifecycle: execution's hooks are registered there.

Execution never imports lifecycle; lifecycle and risk register their handlers in
``AppConfig.ready()``. That must happen in a worker started with ``celery -A
tradingsite worker`` as much as in the web process: here one real worker (solo pool)
on Redis + PostgreSQL takes an entry order the API path recorded, fills it on the
paper exchange and must open the position (``entry_filled``); then it runs the close
action (``close_action_run``) and applies the exit fill (``exit_filled``), which writes
the trade.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection

from execution.models import Action, Order
from execution.services import order_request
from lifecycle.models import Position, Trade
from lifecycle.services import position_request_close
from tests.scaleout.processes import (
    celery_processes,
    database_url,
    publishing_to,
    wait_until,
)
from tests.scaleout.test_scaleout import scaleout_broker, worker_names
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration,
              pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BTC = "BTC/USDT:USDT"
PAPER = {"feed": {"type": "manual", "prices": {BTC: "50000"}},
         "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
         "book": {"spreadPercent": 0.02, "levelNotional": 500000, "levelStepPercent": 0.01},
         "markets": {BTC: {"amountStep": "0.001", "priceStep": "0.1", "minAmount": "0.001"}}}


@pytest.fixture
def broker():
    url = scaleout_broker()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def test_a_worker_process_opens_and_closes_the_position_of_its_fills(broker, tmp_path):
    account = ExchangeAccountFactory(name="paper-worker", paper_config=PAPER)
    strategy = StrategyFactory(name="worker-hooks", account=account)
    caller = get_user_model().objects.create_user("bot", is_staff=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingsite.settings_test",
           "DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": broker,
           "LOG_LEVEL": "WARNING"}

    with celery_processes(env, tmp_path) as processes, publishing_to(broker):
        try:
            processes.worker("solo", pool="solo", concurrency=1, queues=["celery"])
            wait_until(lambda: processes.check_alive() or worker_names() == {"solo"},
                       timeout=60, what="the worker answering")

            order, created = order_request(caller=caller, strategy=strategy, symbol=BTC,
                                           side="buy", quantity=Decimal("0.5"))
            position = wait_until(
                lambda: processes.check_alive() or Position.objects.filter(
                    strategy=strategy).first(), timeout=60, what="the entry fill's position")

            action, _ = position_request_close(position=position, reason="manual",
                                               actor="operator")
            trade = wait_until(
                lambda: processes.check_alive() or Trade.objects.filter(
                    position=position).first(), timeout=60, what="the exit fill's trade")
        except Exception:
            print(processes.tails())
            raise

    assert created
    order.refresh_from_db()
    assert (order.status, order.filled_quantity, order.position_id) == (
        "filled", Decimal("0.5"), position.pk)
    position.refresh_from_db()
    assert (position.state, position.side, position.initial_quantity, position.quantity) == (
        "CLOSED", "long", Decimal("0.5"), Decimal("0"))
    assert (trade.quantity, trade.exit_reason) == (Decimal("0.5"), "manual")
    assert Action.objects.get(pk=action.pk).state == "done"
    close = Order.objects.get(action=action)
    assert (close.client_order_id, close.status, close.purpose) == (
        f"close-{action.pk}", "filled", "emergency_close")
