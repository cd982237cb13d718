"""Suite-wide fixtures: service availability, Redis isolation, factories."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                      timeout=1):
            return True
    except OSError:
        return False


def _database_vendor() -> str:
    from django.db import connection

    return connection.vendor


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """PostgreSQL tests run in the PostgreSQL pass; Redis tests need Redis.

    Without a service a test is skipped with what to start, unless
    REQUIRE_SERVICES=1 (CI), where a missing Redis fails the run instead.
    """
    on_postgres = _database_vendor() == "postgresql"
    deselected, kept = [], []
    for item in items:
        if item.get_closest_marker("postgres") and not on_postgres:
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
        print(f"\n{len(deselected)} PostgreSQL tests deselected: they run in the PostgreSQL pass "
              "(DATABASE_URL=postgres://…, see .ci/run).")
    if any(item.get_closest_marker("redis") for item in items) and not _reachable(redis_url()):
        message = (f"Redis is not reachable at {redis_url()}: start it with "
                   "'redis-server --daemonize yes' or set TEST_REDIS_URL")
        if REQUIRE_SERVICES:
            raise pytest.UsageError(message + " (REQUIRE_SERVICES=1)")
        skip = pytest.mark.skip(reason=message)
        for item in items:
            if item.get_closest_marker("redis"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_live_config():
    """Every test starts from the settings' live-trading config, not a cached one."""
    from tradingsite.live_config import clear_cache

    clear_cache()
    yield
    clear_cache()


@pytest.fixture(autouse=True)
def _live_events_delivered():
    """Live events a test queued for a Redis layer are delivered before the next test."""
    yield
    from tradingsite import live

    live.shutdown()


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(redis_url())
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def account(db):
    from tradingsite.testing.factories import ExchangeAccountFactory

    return ExchangeAccountFactory()


@pytest.fixture
def strategy(db, account):
    from tradingsite.testing.factories import StrategyFactory

    return StrategyFactory(account=account)


@pytest.fixture
def staff_user(db, django_user_model):
    return django_user_model.objects.create_user("operator", password="op-pass-123",
                                                 is_staff=True, is_superuser=True)


@pytest.fixture
def viewer_user(db, django_user_model):
    return django_user_model.objects.create_user("viewer", password="view-pass-123")


def _api_client(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def staff_api(staff_user):
    """A DRF client authenticated as a staff user (may write)."""
    return _api_client(staff_user)


@pytest.fixture
def viewer_api(viewer_user):
    """A DRF client authenticated as a non-staff user (read only)."""
    return _api_client(viewer_user)


# --- the promises hold after every integration scenario ---------------------------------------

PROMISES = pytest.StashKey[dict]()


def _is_scenario(item: pytest.Item) -> bool:
    return bool(item.get_closest_marker("integration")) or "tests/scaleout/" in item.nodeid


def _uses_database(item: pytest.Item) -> bool:
    return bool(item.get_closest_marker("django_db")) or bool(
        {"db", "transactional_db"} & set(getattr(item, "fixturenames", ())))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[PROMISES] = {"scenarios": 0, "compared": 0, "no_database": 0,
                              "nothing_on_an_exchange": 0, "markets_not_compared": 0}


@pytest.fixture(autouse=True)
def _promises_hold(request: pytest.FixtureRequest):
    """After every integration scenario, every promise of ``operations.invariants`` holds.

    The check runs right after the test body (``pytest_runtest_call`` below), while the
    scenario's clock, paper books and emulators are still as the test left them, with the
    exchanges' scripted faults held back. A scenario without a database, or whose
    exchanges hold nothing to compare, is counted as not compared; the count is printed
    at the end of the run.
    """
    if _is_scenario(request.node):
        request.node.stash[PROMISES] = {}
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield  # a failing scenario fails by itself: nothing to add
    if PROMISES not in item.stash:
        return outcome
    counts = item.config.stash[PROMISES]
    counts["scenarios"] += 1
    if not _uses_database(item):
        counts["no_database"] += 1
        return outcome
    from tradingsite.testing.promises import check_promises

    check = check_promises()
    counts["markets_not_compared"] += len(check.markets_not_compared)
    if check.compared_with_an_exchange:
        counts["compared"] += 1
    else:
        counts["nothing_on_an_exchange"] += 1
    if check.violations:
        pytest.fail("promises broken at the end of the scenario:\n" + "\n".join(
            f"  {violation}" for violation in check.violations), pytrace=False)
    return outcome


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    counts = config.stash.get(PROMISES, None)
    if not counts or not counts["scenarios"]:
        return
    terminalreporter.write_line(
        f"promises checked after {counts['scenarios']} integration scenarios: compared with "
        f"an exchange after {counts['compared']}; nothing on an exchange to compare: "
        f"{counts['nothing_on_an_exchange']}; no database: {counts['no_database']}; markets "
        f"left out of the net-position check (positions handed over, never opened there): "
        f"{counts['markets_not_compared']}")
