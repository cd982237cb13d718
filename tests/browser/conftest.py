"""Browser tests: real servers and headless Chromium driven by Playwright.

``test_dashboard``: daphne in a subprocess (as in production) shares the test database
and the channel layer through real services: these tests run in the PostgreSQL + Redis
pass (marked ``postgres`` and ``redis``) with ``transaction=True`` so the rows a test
writes are committed and visible to the server. The embedded pass (in-memory SQLite and
channel layer, neither shareable across processes) deselects them.

``test_embedded``: the embedded default (``runplatform`` on a seeded SQLite file) with
commands run as separate processes; it needs no test database, so it runs in the
embedded pass only (marked ``embedded``).

Without /usr/bin/chromium they are skipped with what to install, except under
REQUIRE_SERVICES=1 (CI), where a missing browser fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from conftest import REQUIRE_SERVICES, redis_url
from tradingsite.testing.live_server import CHROMIUM, CHROMIUM_ARGS, asgi_server

# Playwright's sync API keeps an event loop in the test thread; the ORM calls the
# tests make between page actions are ordinary synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

MISSING_BROWSER = ("Chromium is not installed at /usr/bin/chromium: "
                   "install it with 'apt-get update && apt-get install -y chromium'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.db import connection

    if connection.vendor == "postgresql":  # the embedded default's tests ran in the first pass
        embedded = [item for item in items if item.get_closest_marker("embedded")]
        if embedded:
            config.hook.pytest_deselected(items=embedded)
            items[:] = [item for item in items if not item.get_closest_marker("embedded")]
    browser_items = [item for item in items if item.get_closest_marker("browser")]
    if not browser_items or CHROMIUM.exists():
        return
    if REQUIRE_SERVICES:
        raise pytest.UsageError(MISSING_BROWSER + " (REQUIRE_SERVICES=1)")
    for item in browser_items:
        item.add_marker(pytest.mark.skip(reason=MISSING_BROWSER))


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def live_url(django_db_setup, django_db_blocker) -> Iterator[str]:
    """The dashboard served by daphne on a free port, on the test database and Redis."""
    env = {"DATABASE_URL": _database_url(), "REDIS_URL": redis_url(),
           "DJANGO_SETTINGS_MODULE": "tradingsite.settings_test"}
    with asgi_server(env) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    """Chromium for one test module. Playwright's sync API keeps an event loop running in
    this thread while it is started, so it must be stopped before other modules run
    (async_to_sync and asyncio.run refuse to start beside a running loop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
