"""Scale-out proof: two real worker processes and a real beat on Redis + PostgreSQL.

One worker runs a thread pool, the other a prefork pool; both serve the default
queue and the exchange account's order queue. Beat runs with the database scheduler
(its intervals shortened in the database, as an operator would in the admin). The
exchange is the local Bybit v5 emulator driven by the real ccxt Bybit class: it runs
in this test process, outlives the workers and sees every order, so "exactly once"
is checked on the exchange's side too.

Fed: 1,000 close requests (operator and risk, through the same service the API
and the risk monitor use) and 200 positions that cross their holding-time limit
while the workers run (closed by beat's timeout pass). Every action must run once,
and every position must be closed once: one close order on the exchange, one trade.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from conftest import redis_url
from execution.exchanges.ccxt_exchange import reset_ccxt_clients
from execution.models import Action, ActionState, Order
from execution.tests.bybit_emulator import BybitEmulator
from lifecycle.models import Position, PositionEvent, Trade
from lifecycle.services import position_request_close
from tests.scaleout.processes import (
    celery_processes,
    database_url,
    neighbour_redis_db,
    publishing_to,
    wait_until,
)
from tradingsite.celery import app as celery_app
from tradingsite.schedule import ensure_periodic_tasks
from tradingsite.testing.factories import ExchangeAccountFactory, PositionFactory, StrategyFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration,
              pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BTC = "BTC/USDT:USDT"
ORDER_QUEUE = "orders.bybit"
REQUESTED = 1000
CROSSING = 200
DEADLINE_SECONDS = 120
# Beat's entries during the test: the timeout pass every second, the sweeps every 2 s;
# everything else (risk check, candles, reports) is paused.
BEAT = {"lifecycle: check timeouts": 1, "execution: process actions": 2,
        "execution: order timeouts": 2}


def scaleout_broker() -> str:
    return os.environ.get("SCALEOUT_REDIS_URL") or neighbour_redis_db(redis_url())


@pytest.fixture
def broker():
    url = scaleout_broker()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def emulator():
    with BybitEmulator() as emu:
        yield emu


def shorten_beat() -> None:
    ensure_periodic_tasks()
    for task in PeriodicTask.objects.exclude(name__in=BEAT):
        task.enabled = False
        task.save()
    for name, seconds in BEAT.items():
        task = PeriodicTask.objects.get(name=name)
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS)
        task.enabled = True
        task.save()


def worker_names() -> set[str]:
    replies = celery_app.control.ping(timeout=0.5) or []
    return {name.split("@")[0] for reply in replies for name in reply}


def test_two_workers_and_beat_execute_every_action_once_and_close_every_position_once(
        broker, emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("EXCHANGE_SCALEOUT_BYBIT_KEY", emulator.api_key)
    monkeypatch.setenv("EXCHANGE_SCALEOUT_BYBIT_SECRET", emulator.api_secret)
    account = ExchangeAccountFactory(
        name="bybit-scaleout", exchange_id="bybit", api_base_url=emulator.base_url + "/",
        api_key_env="EXCHANGE_SCALEOUT_BYBIT_KEY", api_secret_env="EXCHANGE_SCALEOUT_BYBIT_SECRET",
        order_queue=ORDER_QUEUE)
    strategy = StrategyFactory(name="scaleout", account=account)
    now = timezone.now()
    Position.objects.bulk_create(
        PositionFactory.build_batch(REQUESTED, strategy=strategy, symbol=BTC,
                                    quantity=Decimal("0.01"), opened_at=now - timedelta(hours=1))
        # past the warning threshold; the 240-minute limit is crossed 20 s from now
        + PositionFactory.build_batch(CROSSING, strategy=strategy, symbol=BTC,
                                      quantity=Decimal("0.01"),
                                      opened_at=now - timedelta(minutes=240, seconds=-20)))
    requested = list(Position.objects.filter(opened_at=now - timedelta(hours=1)).order_by("pk"))
    shorten_beat()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingsite.settings_test",
           "DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": broker,
           "EXCHANGE_ENABLE_RATE_LIMIT": "0", "LOG_LEVEL": "WARNING"}

    with celery_processes(env, tmp_path) as processes, publishing_to(broker):
        try:
            queues = ["celery", ORDER_QUEUE]
            processes.worker("threads", pool="threads", concurrency=2, queues=queues)
            processes.worker("prefork", pool="prefork", concurrency=2, queues=queues)
            processes.beat(tmp_path / "beat-schedule")
            wait_until(lambda: processes.check_alive() or worker_names() == {"threads",
                                                                              "prefork"},
                       timeout=60, what="both workers answering")

            for i, position in enumerate(requested):
                position_request_close(position=position, reason="risk" if i % 2 else "manual",
                                       actor="risk" if i % 2 else "operator")

            wait_until(lambda: processes.check_alive() or (
                Trade.objects.count() == REQUESTED + CROSSING
                and not Action.objects.filter(state__in=ActionState.open()).exists()),
                timeout=DEADLINE_SECONDS, what="every position closed")
            stats = celery_app.control.inspect(timeout=1).stats() or {}
        except Exception:
            print(processes.tails())
            raise
    reset_ccxt_clients()

    # every action ran once
    actions = list(Action.objects.all())
    assert len(actions) == REQUESTED + CROSSING
    assert Counter((a.state, a.attempts) for a in actions) == {("done", 1): len(actions)}
    assert Counter((a.requested_by, a.reason) for a in actions) == {
        ("operator", "manual"): REQUESTED // 2, ("risk", "risk"): REQUESTED // 2,
        ("timeout", "timeout"): CROSSING}
    # every position closed once: one close order, filled once, one trade
    assert set(Position.objects.values_list("state", flat=True)) == {"CLOSED"}
    orders = Counter(Order.objects.values_list("position_id", "status"))
    assert len(orders) == REQUESTED + CROSSING and set(orders.values()) == {1}
    assert {status for _, status in orders} == {"filled"}
    assert Trade.objects.values("position").distinct().count() == REQUESTED + CROSSING
    assert PositionEvent.objects.filter(to_state="CLOSED").count() == REQUESTED + CROSSING
    # … and the exchange saw each close order exactly once
    assert emulator.calls("v5/order/create") == REQUESTED + CROSSING
    link_ids = Counter(o["orderLinkId"] for o in emulator.state.orders.values())
    assert link_ids == Counter(Order.objects.values_list("client_order_id", flat=True))
    assert set(link_ids.values()) == {1}
    # both workers took part, beat drove the timeouts
    done = {name.split("@")[0]: sum(s.get("total", {}).values()) for name, s in stats.items()}
    assert set(done) == {"threads", "prefork"} and min(done.values()) > 0, done
    assert Counter(Trade.objects.values_list("exit_reason", flat=True))["timeout"] == CROSSING
