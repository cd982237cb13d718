"""Suite-wide fixtures: service availability, Redis isolation, factories."""

from __future__ import annotations

import os
import socket
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
def _the_test_process_serves_its_dashboards(monkeypatch):
    """Tests run as the platform process: their events reach their own listeners and never
    the live-event outbox (tests of the outbox say otherwise: ``live_outbox`` tests)."""
    from tradingsite import live

    monkeypatch.setattr(live._dashboards, "served_here", True)


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
