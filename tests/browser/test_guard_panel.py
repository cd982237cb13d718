"""The portfolio guard panel in real headless Chromium: limits, a trip, the re-arm."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone
from playwright.sync_api import Page, expect

from guard.models import GuardTrip, TradingScope
from guard.services import guard_evaluate, scope_get, scope_portfolio_set
from lifecycle.models import Position, PositionSide
from tests.browser.test_dashboard import STAFF, VIEWER, book, in_worker, log_in, users  # noqa: F401
from tradingsite.models import AuditEvent

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]

SCOPE = 'li[data-scope="account:paper-main"]'


@pytest.fixture
def tripped(book):  # noqa: F811
    """The demo account with a daily loss limit of 50, tripped by marks 2 % against it."""
    scope_portfolio_set(scope=scope_get("account:paper-main"), actor="test",
                        overrides={"dailyLossLimitAmount": 50, "maxOpenPositions": 40})
    in_worker(guard_evaluate)
    now = timezone.now()
    Position.objects.filter(side=PositionSide.LONG).update(
        last_price=F("entry_price") * Decimal("0.98"), last_price_at=now)
    Position.objects.filter(side=PositionSide.SHORT).update(
        last_price=F("entry_price") * Decimal("1.02"), last_price_at=now)
    result = in_worker(guard_evaluate)
    assert "account:paper-main: DAILY_LOSS" in result.trips


def test_staff_see_the_trip_and_re_arm_the_account_with_a_reason(page: Page, live_url, tripped,
                                                                users):  # noqa: F811
    log_in(page, live_url, STAFF)
    scope = page.locator(SCOPE)
    expect(scope).to_contain_text("TRIPPED DAILY_LOSS")
    expect(scope.locator(".badge")).to_have_text("HALTED")
    expect(scope.locator('.guard-limit[data-key="maxOpenPositions"]')).to_contain_text("of 40")
    expect(page.locator("#guard-trips")).to_contain_text("DAILY_LOSS")

    scope.get_by_role("button", name="Re-arm…").click()
    page.fill("#guard-reason", "loss reviewed, marks were stale")
    page.click("#guard-confirm")

    expect(scope.locator(".badge")).to_have_text("ACTIVE")
    expect(scope).not_to_contain_text("TRIPPED")
    account = TradingScope.objects.get(kind="account")
    assert (account.state, account.trip_code, account.state_by) == ("ACTIVE", "", "operator")
    assert GuardTrip.objects.get(scope=account).rearm_reason == "loss reviewed, marks were stale"
    assert AuditEvent.objects.filter(action="trading_state.rearm", actor="operator").count() == 1


def test_viewers_see_the_guard_but_no_buttons(page: Page, live_url, tripped,
                                             users):  # noqa: F811
    log_in(page, live_url, VIEWER)
    scope = page.locator(SCOPE)
    expect(scope).to_contain_text("TRIPPED DAILY_LOSS")
    expect(scope.get_by_role("button")).to_have_count(0)
    expect(page.locator("#guard-dialog")).to_have_count(0)
