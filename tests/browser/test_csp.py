"""The dashboard under its Content-Security-Policy, in real Chromium: nothing is refused.

No inline script, no style attribute, the websocket on ``connect-src 'self'``: a page that
broke the policy would log "Refused to …" and lose its live updates or charts.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_dashboard import STAFF, book, log_in, users  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]


def test_the_dashboard_and_position_page_break_no_policy(page, live_url, book, users):  # noqa: F811
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    log_in(page, live_url, STAFF)  # the live channel opens: connect-src allows the websocket
    response = page.goto(f"{live_url}/")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    expect(page.locator("#positions-body tr")).to_have_count(6)
    expect(page.locator("#positions-body i[style]").first).to_have_attribute(
        "style", re.compile(r"^(height|width): \d"))  # set through the CSSOM: allowed
    page.goto(f"{live_url}/positions/{book.positions['AVAX'].pk}/")
    expect(page.locator("#health-chart svg path.line")).to_have_count(1)
    expect(page.locator("#health-title ~ .legend i.line-warning")).to_have_css(
        "border-top-style", "dashed")
    expect(page.locator("#price-chart svg .candle").first).to_be_visible()
    assert refused == []
