"""The dashboard in real headless Chromium, served by daphne, live over Redis."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from execution.models import Action
from lifecycle.models import Position
from risk.models import HealthSnapshot
from risk.services import risk_check_run
from tests.browser.seed import seed_book
from tradingsite.live import send_now
from tradingsite.services import is_trading_halted, trading_halt

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]

LIVE_TIMEOUT_MS = 2_000
STAFF = ("operator", "op-pass-123")
VIEWER = ("viewer", "view-pass-123")


@pytest.fixture
def book(redis_client):
    """The seeded book, committed so the server process sees it (Redis layer flushed)."""
    return seed_book(timezone.now(), trades=40)


@pytest.fixture
def users():
    model = get_user_model()
    model.objects.create_user(STAFF[0], password=STAFF[1], is_staff=True, is_superuser=True)
    model.objects.create_user(VIEWER[0], password=VIEWER[1])


def in_worker(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on another thread, as a Celery worker would.

    Playwright's event loop owns the test thread, and the live push (async_to_sync)
    refuses to run beside a loop.
    """
    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=30)


def log_in(page: Page, live_url: str, who: tuple[str, str]) -> None:
    page.goto(f"{live_url}/")
    expect(page).to_have_url(f"{live_url}/login/?next=/")
    page.fill("#id_username", who[0])
    page.fill("#id_password", who[1])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_url}/")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")


def wait_until(page: Page, expression: str, timeout_ms: int = 5_000) -> None:
    """Poll ``expression`` until true. Not ``page.wait_for_function``: that evaluates its
    predicate with eval() inside the page, which the Content-Security-Policy refuses."""
    waited = 0
    while not page.evaluate(expression):
        if waited >= timeout_ms:
            raise AssertionError(f"not true after {timeout_ms} ms: {expression}")
        page.wait_for_timeout(50)
        waited += 50


def row(page: Page, position_id: int):
    return page.locator(f'#positions-body tr[data-position-id="{position_id}"]')


def test_log_in_and_see_the_seeded_positions(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    rows = page.locator("#positions-body tr")
    expect(rows).to_have_count(6)
    doge = row(page, book.positions["DOGE"].pk)
    expect(doge.locator("td.sym a")).to_have_text("DOGE/USDT")
    expect(doge.locator('[data-role="score"]')).to_have_text("24.1")
    expect(doge).to_have_class(re.compile(r"\bdanger-CRITICAL\b"))
    expect(doge.locator('[data-role="state"]')).to_have_text("WARNING")
    expect(doge.locator('[data-component="volume"]')).to_have_attribute("data-value", "8.50")
    expect(row(page, book.positions["AVAX"].pk).locator('[data-role="countdown"]')).to_have_text(
        "closing")
    expect(page.locator("#kpi-open")).to_have_text("6")
    expect(page.locator("#alerts-feed li")).to_have_count(4)  # open alerts only


def test_a_risk_check_changes_a_score_and_the_page_shows_it(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    page.evaluate("window.__notReloaded = true")
    btc = book.positions["BTC"]
    score = row(page, btc.pk).locator('[data-role="score"]')
    expect(score).to_have_text("82.4")
    result = in_worker(risk_check_run, force=True)
    assert result.positions == 6
    btc = Position.objects.get(pk=btc.pk)
    latest = HealthSnapshot.objects.filter(position=btc).latest("taken_at")
    assert f"{btc.health_score:.1f}" != "82.4"
    expect(score).to_have_text(f"{btc.health_score:.1f}", timeout=LIVE_TIMEOUT_MS)
    expect(row(page, btc.pk).locator('[data-component="drawdown"]')).to_have_attribute(
        "data-value", f"{latest.drawdown_score:.2f}")
    assert page.evaluate("window.__notReloaded") is True


def test_a_pushed_health_update_shows_without_reload(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    page.evaluate("window.__notReloaded = true")
    btc = book.positions["BTC"]
    in_worker(send_now, "health.updated", {"positions": [{
        "id": btc.pk, "symbol": btc.symbol, "score": "27.3", "danger_level": "CRITICAL",
        "state": "OPEN", "minutes_to_timeout": 190.0, "last_price": "63900.0",
        "unrealised_pnl": "-77.625", "data_complete": True,
        "components": {"time_at_risk": "79.2", "drawdown": "10.0", "volume": "40.0",
                       "volatility": "22.0", "profitability": "5.0"}}]})
    target = row(page, btc.pk)
    expect(target.locator('[data-role="score"]')).to_have_text("27.3", timeout=LIVE_TIMEOUT_MS)
    expect(target).to_have_class(re.compile(r"\bdanger-CRITICAL\b"))
    expect(target.locator('[data-role="upnl"]')).to_have_text("−77.63")
    expect(target.locator('[data-component="drawdown"]')).to_have_attribute("data-value", "10.00")
    assert page.evaluate("window.__notReloaded") is True


def score_and_push(position_id: int, score: str) -> None:
    """What a risk check does for one position: write the score, then push it."""
    Position.objects.filter(pk=position_id).update(health_score=Decimal(score),
                                                   danger_level="WARNING")
    send_now("health.updated", {"positions": [{"id": position_id, "score": score,
                                               "danger_level": "WARNING"}]})


def test_the_page_reconnects_after_the_connection_drops(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    page.evaluate("window.liveChannel.socket.close()")
    # A second connection opened by the backoff (0.5 s), and the reload it triggers done.
    wait_until(page, "window.liveChannel.opened === 2 && !window.liveChannel.reloading")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    eth = book.positions["ETH"]
    in_worker(score_and_push, eth.pk, "55.5")
    expect(row(page, eth.pk).locator('[data-role="score"]')).to_have_text(
        "55.5", timeout=LIVE_TIMEOUT_MS)


def test_a_closed_position_leaves_the_table_live(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    xrp = book.positions["XRP"]
    in_worker(send_now, "position.state_changed", {"id": xrp.pk, "state": "CLOSED", "from_state": "CLOSING"})
    expect(row(page, xrp.pk)).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#kpi-open")).to_have_text("5")


def money(value: float | None) -> str:
    """The dashboard's money format: signed, thousands separated, 2 decimals, half away from 0."""
    if value is None:
        return "—"
    amount = Decimal(abs(value)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    sign = "+" if value > 0 else "−" if value < 0 else ""
    return f"{sign}{amount:,.2f}"


def test_the_period_tabs_change_the_metrics(page, live_url, book, users):
    log_in(page, live_url, VIEWER)
    panel = page.locator("#performance")
    trades = page.locator('#perf-metrics [data-metric="trades"] .value')
    net = page.locator('#perf-metrics [data-metric="total_pnl"] .value')
    expect(panel).to_have_attribute("data-period", "ALL")
    expect(trades).to_have_text("40")
    seen = {}
    for period in ("TODAY", "WEEK", "MONTH", "ALL"):
        report = page.request.get(f"{live_url}/api/analytics/performance?period={period}").json()
        page.click(f'#period-tabs button[data-period="{period}"]')
        expect(panel).to_have_attribute("data-period", period)
        expect(page.locator(f'#period-tabs button[data-period="{period}"]')).to_have_attribute(
            "aria-selected", "true")
        expect(trades).to_have_text(str(report["trade_count"]))
        expect(net).to_have_text(money(report["metrics"]["total_pnl"]["value"]) + "\u00a0USDT")
        seen[period] = report["trade_count"]
    assert seen["ALL"] == 40 and seen["TODAY"] < seen["ALL"]


def test_staff_halt_and_resume_trading(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#halt-button")
    page.fill("#halt-reason", "exchange maintenance")
    page.click("#halt-confirm")
    banner = page.locator("#halt-banner")
    expect(banner).to_be_visible()
    expect(page.locator("#halt-text")).to_contain_text("exchange maintenance — by operator")
    assert is_trading_halted()
    page.click("#resume-button")
    expect(banner).to_be_hidden()
    expect(page.locator("#trading-status")).to_have_text("Trading active")
    assert not is_trading_halted()


def test_viewers_have_no_halt_button_but_see_the_halt(page, live_url, book, users):
    log_in(page, live_url, VIEWER)
    expect(page.locator("#halt-button")).to_have_count(0)
    expect(page.locator("#resume-button")).to_have_count(0)
    expect(page.locator("#positions-body button")).to_have_count(0)
    in_worker(trading_halt, reason="risk review", actor="operator")
    expect(page.locator("#halt-banner")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#halt-text")).to_contain_text("risk review")


def test_the_position_page_shows_history_events_and_orders(page, live_url, book, users):
    log_in(page, live_url, VIEWER)
    avax = book.positions["AVAX"]
    page.click(f'#positions-body tr[data-position-id="{avax.pk}"] td.sym a')
    expect(page).to_have_url(f"{live_url}/positions/{avax.pk}/")
    expect(page.locator("#health-chart svg path.line")).to_have_count(1)
    expect(page.locator("#events-table tbody tr")).to_have_count(5)
    expect(page.locator("#orders-table tbody tr")).to_have_count(2)
    expect(page.locator("#orders-table tbody")).to_contain_text("emergency close")
    expect(page.locator("#actions-table tbody")).to_contain_text("running")
    expect(page.locator('[data-role="cancel-order"]')).to_have_count(0)
    expect(page.locator("#close-button")).to_have_count(0)
    expect(page.locator('#components [data-component="time_at_risk"] .hbar-value')).to_have_text(
        "0.0")
    in_worker(send_now, "health.updated", {"positions": [{"id": avax.pk, "score": "12.0",
                                               "danger_level": "CRITICAL",
                                               "last_price": str(Decimal("26.5"))}]})
    expect(page.locator("#pos-score")).to_have_text("12.0", timeout=LIVE_TIMEOUT_MS)


def test_staff_get_cancel_for_active_orders_and_an_emergency_close(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    avax = book.positions["AVAX"]
    page.goto(f"{live_url}/positions/{avax.pk}/")
    # The entry order is filled (final); only the submitting close order can be cancelled,
    # and a position already closing offers no second close.
    expect(page.locator('[data-role="cancel-order"]')).to_have_count(1)
    expect(page.locator("#close-button")).to_be_hidden()
    page.goto(f"{live_url}/positions/{book.positions['DOGE'].pk}/")
    expect(page.locator("#close-button")).to_be_visible()
    expect(page.locator('[data-role="cancel-order"]')).to_have_count(0)


def test_staff_request_an_emergency_close_from_the_table(page, live_url, book, users):
    log_in(page, live_url, STAFF)
    page.on("dialog", lambda dialog: dialog.accept())
    btc = book.positions["BTC"]
    row(page, btc.pk).get_by_role("button", name="Close").click()
    expect(page.locator("#toasts")).to_contain_text(f"Close of #{btc.pk} queued")
    action = Action.objects.get(position=btc)
    assert (action.kind, action.state, action.reason, action.requested_by) == (
        "emergency_close", "pending", "manual", "operator")


def test_the_accounts_panel_and_a_pushed_mark_show_the_live_account_truth(page, live_url, book,
                                                                          users):
    from execution.models import AccountStream, ExchangeAccount

    account = ExchangeAccount.objects.get(name="paper-main")
    AccountStream.objects.create(
        account=account, owner="host:1:a", mode="stream", connected=True, reconnects=2,
        lease_until=timezone.now() + timezone.timedelta(seconds=20),
        last_message_at=timezone.now(), last_reconcile_at=timezone.now(),
        balances={"USDT": {"free": "20000", "used": "5000", "total": "25000"}},
        balances_at=timezone.now())
    log_in(page, live_url, STAFF)
    block = page.locator('#live-accounts-list .account[data-account="paper-main"]')
    expect(block).to_contain_text("stream · connected")
    expect(block).to_contain_text("2 reconnects")
    expect(block.locator("dl.kv dd").first).to_have_text("25,000.00 USDT")
    expect(block.locator("dl.kv dt").first).to_contain_text("exchange (last reconcile)")
    expect(block.locator("tbody tr")).to_have_count(6)  # one exposure row per symbol held
    expect(block.locator(".account-head")).to_contain_text("6 open")
    expect(page.get_by_role("heading", name="Balances & exposure")).to_have_count(0)  # one panel

    btc = book.positions["BTC"]
    in_worker(send_now, "positions.marked", {
        "account": account.pk, "account_name": "paper-main", "at": timezone.now().isoformat(),
        "marks": {btc.symbol: "60000.5"}})
    target = row(page, btc.pk)
    expect(target.locator('[data-role="mark"]')).to_contain_text("60,000.5",
                                                                timeout=LIVE_TIMEOUT_MS)
    expect(target.locator('[data-role="mark-age"]')).to_have_text(re.compile(r"^[0-9]s ago$"))
