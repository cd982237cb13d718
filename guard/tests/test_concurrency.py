"""Concurrent entries at a limit cannot overshoot it: one decision per scope at a time.

Real threads on PostgreSQL, each with its own connection, released together by a
barrier; many rounds, each on fresh scopes, so the two decisions really overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from execution.gates import OrderRefused
from execution.models import Order
from guard.models import OrderRefusal
from guard.services import scope_rows_ensure
from guard.tests.conftest import entry, held
from tradingsite.models import AuditEvent
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 12


def race(*calls: Callable[[], object]) -> list[object]:
    """Run ``calls`` at the same moment in threads; each result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # the outcome is what the test compares
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def outcome(results: list[object]) -> list[str]:
    return sorted("placed" if isinstance(r, Order) else r.reason_code
                  if isinstance(r, OrderRefused) else repr(r) for r in results)


def test_two_workers_at_max_open_positions_minus_one_place_exactly_one_entry():
    account = ExchangeAccountFactory(name="raced")
    for round_ in range(ROUNDS):
        strategy = StrategyFactory(name=f"raced-{round_}", account=account,
                                   live_trading={"portfolio": {"maxOpenPositions": 3}})
        held(strategy, 2)
        scope_rows_ensure(account=account, strategy=strategy)  # the lock decides, not the insert

        results = race(lambda s=strategy: entry(s), lambda s=strategy: entry(s))

        assert outcome(results) == ["MAX_OPEN_POSITIONS", "placed"], round_
        assert Order.objects.filter(strategy=strategy).count() == 1
    assert OrderRefusal.objects.filter(reason_code="MAX_OPEN_POSITIONS").count() == ROUNDS
    assert AuditEvent.objects.filter(action="order.refused").count() == ROUNDS


def test_workers_of_different_accounts_share_the_platforms_limit(settings):
    from tradingsite.live_config import clear_cache

    for round_ in range(ROUNDS):
        first = StrategyFactory(name=f"a-{round_}", account=ExchangeAccountFactory(
            name=f"a-{round_}"))
        second = StrategyFactory(name=f"b-{round_}", account=ExchangeAccountFactory(
            name=f"b-{round_}"))
        held(first, 1)
        scope_rows_ensure(every=True)
        # one slot left on the platform: everything held or on its way, plus one
        settings.LIVE_TRADING = {"portfolio": {"maxOpenPositions": 2 * round_ + 2}}
        clear_cache()

        results = race(lambda: entry(first, quantity="0.2"),
                       lambda: entry(second, quantity="0.2"))

        assert outcome(results) == ["MAX_OPEN_POSITIONS", "placed"], round_
    assert Order.objects.count() == ROUNDS


def test_entries_below_the_limit_all_pass_together():
    strategy = StrategyFactory(name="roomy", live_trading={"portfolio": {"maxOpenPositions": 10}})

    results = race(*[lambda: entry(strategy, quantity=Decimal("0.01"))] * 4)

    assert outcome(results) == ["placed"] * 4
