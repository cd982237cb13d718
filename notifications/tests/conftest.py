"""Fixtures of the notification tests: a real HTTP sink that Apprise's json:// delivers to
(``tradingsite.testing.sink``), a frozen clock, NOTIFY_URLS per test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

# Fixtures of the apps whose events are told (used by test_outbox.py).
from execution.tests.conftest import (  # noqa: F401
    _fresh_paper_exchanges,
    paper,
    paper_account,
    paper_strategy,
    sleep,
)
from lifecycle.tests.conftest import dispatched  # noqa: F401
from notifications.channels import forget_env_sync
from notifications.health import forget_cached_health
from risk.tests.conftest import live_events  # noqa: F401
from tradingsite.testing.sink import Sink

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def sink():
    server = Sink()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_channels():
    """NOTIFY_URLS is mirrored once per value and process: each test starts over."""
    forget_env_sync()
    forget_cached_health()
    yield
    forget_env_sync()
    forget_cached_health()


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def notify_to(settings):
    """``notify_to(sink.url, "severity>=WARNING:" …)``: NOTIFY_URLS for this test."""

    def configure(*items: str) -> None:
        settings.NOTIFY_URLS = ",".join(items)
        forget_env_sync()

    return configure
