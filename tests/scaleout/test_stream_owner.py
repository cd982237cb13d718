"""Two real worker processes: exactly one owns an account's stream; a survivor takes over.

Each production Celery worker hosts the account streams (``PLATFORM_SERVICES``); the
lease on the account's ``AccountStream`` row makes one of them the owner. The owner is
killed with SIGKILL (no clean stop, the lease is not given up): the other worker
takes the account over once the lease runs out, within the account's
``reconcileIntervalSeconds``.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.db import connection
from django.utils import timezone

from execution.models import AccountStream
from tests.scaleout.processes import celery_processes, database_url, publishing_to, wait_until
from tests.scaleout.test_scaleout import scaleout_broker, worker_names
from tradingsite.testing.factories import ExchangeAccountFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration,
              pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RECONCILE_SECONDS = 6  # a 2 s lease


@pytest.fixture
def broker():
    url = scaleout_broker()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def owner_pid() -> int | None:
    owner = AccountStream.objects.filter(account__name="paper-owned").values_list(
        "owner", flat=True).first()
    return int(owner.split(":")[1]) if owner else None


def renewed_by(pid: int, after) -> bool:
    """The owner is ``pid`` and it renewed its lease past ``after``."""
    row = AccountStream.objects.filter(account__name="paper-owned").first()
    return row is not None and owner_pid() == pid and row.lease_until > after


def test_two_workers_one_stream_owner_and_the_survivor_takes_over(broker, tmp_path):
    ExchangeAccountFactory(name="paper-owned", starting_capital=Decimal("1000"), live_trading={
        "accountSync": {"reconcileIntervalSeconds": RECONCILE_SECONDS}})
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingsite.settings_test",
           "DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": broker,
           "LOG_LEVEL": "WARNING", "TEST_PLATFORM_SERVICES": "execution.streams.StreamSupervisor"}

    with celery_processes(env, tmp_path) as processes:
        try:
            processes.worker("first", pool="threads", concurrency=1, queues=["celery"])
            first = processes.started[-1][1]
            wait_until(lambda: processes.check_alive() or owner_pid() == first.pid,
                       timeout=60, what="the first worker owns the stream")
            processes.worker("second", pool="threads", concurrency=1, queues=["celery"])
            second = processes.started[-1][1]
            with publishing_to(broker):
                wait_until(lambda: processes.check_alive() or worker_names() == {
                    "first", "second"}, timeout=60, what="both workers up")
            # both run: the owner keeps renewing (every ~0.7 s), the other never takes it
            both_up = timezone.now()
            wait_until(lambda: renewed_by(first.pid, both_up + timedelta(seconds=4)),
                       timeout=15, what="the first worker still the owner 2 s later")

            os.killpg(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(lambda: owner_pid() == second.pid, timeout=RECONCILE_SECONDS * 3,
                       what="the survivor owns the stream")
            took = time.monotonic() - killed_at
        except Exception:
            print(processes.tails())
            raise
    assert took < RECONCILE_SECONDS, f"taken over after {took:.1f} s"
    row = AccountStream.objects.get(account__name="paper-owned")
    assert row.takeovers == 2 and row.mode == "stream"
