"""The dashboard against the embedded default, as `make run` starts it, in real Chromium.

``manage.py runplatform`` runs in a subprocess on a seeded SQLite file with the in-memory
broker and channel layer; management commands run in processes of their own, as from a
shell. These tests need no test database of the suite, so they run in the first pass only
(marked ``embedded``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.prepare import STAFF, VIEWER
from tradingsite.testing.live_server import ROOT, ServerProcess, platform_process

pytestmark = [pytest.mark.browser, pytest.mark.embedded, pytest.mark.slow]

LIVE_TIMEOUT_MS = 2_000
PHONE = {"width": 390, "height": 844}


@dataclass
class Embedded:
    server: ServerProcess
    env: dict[str, str]
    ids: dict[str, int]

    @property
    def url(self) -> str:
        return self.server.url

    def manage(self, *args: str) -> str:
        """A management command in a process of its own, as typed in a shell."""
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                              env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout


def _env(root: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}", "REDIS_URL": "",
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings", "STATE_DIR": str(root / "state"),
            "LIVE_TRADING_FILE": str(root / "no-live-trading.json"), "TRADING_ENV": "development",
            "DEBUG": "0", "PYTHONFAULTHANDLER": "1"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """One seeded SQLite file; each platform below runs on a copy of it."""
    root = tmp_path_factory.mktemp("seeded")
    done = subprocess.run([sys.executable, "-m", "tests.browser.prepare"], cwd=ROOT,
                          env={**os.environ, **_env(root)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "db.sqlite3", json.loads(done.stdout.strip().splitlines()[-1])


def _platform(seeded: tuple[Path, dict[str, int]], root: Path) -> Iterator[Embedded]:
    db, ids = seeded
    shutil.copy(db, root / "db.sqlite3")
    env = _env(root)
    with platform_process(env, log_dir=root) as server:
        yield Embedded(server, env, ids)


@pytest.fixture(scope="module")
def embedded(seeded, tmp_path_factory) -> Iterator[Embedded]:
    """The embedded default serving the seeded book for the whole module."""
    yield from _platform(seeded, tmp_path_factory.mktemp("embedded"))


@pytest.fixture
def stoppable(seeded, tmp_path) -> Iterator[Embedded]:
    """An embedded default of this test's own: the test stops it."""
    yield from _platform(seeded, tmp_path)


def log_in(page: Page, base: str, who: tuple[str, str]) -> None:
    page.goto(f"{base}/login/?next=/")
    page.fill("#id_username", who[0])
    page.fill("#id_password", who[1])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    page.evaluate("window.__notReloaded = true")


def test_halt_trading_from_a_shell_reaches_the_page_within_2_s(page, embedded):
    log_in(page, embedded.url, VIEWER)
    banner = page.locator("#halt-banner")
    expect(banner).to_be_hidden()
    embedded.manage("halt_trading", "--reason", "exchange maintenance (shell)")
    expect(banner).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#halt-text")).to_contain_text("exchange maintenance (shell)")
    expect(page.locator("#trading-status")).to_have_text("Trading halted")
    embedded.manage("resume_trading")
    expect(banner).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#trading-status")).to_have_text("Trading active")
    assert page.evaluate("window.__notReloaded") is True


def test_a_position_closed_counts_in_today_without_a_reload(page, embedded):
    log_in(page, embedded.url, STAFF)
    page.click('#period-tabs button[data-period="TODAY"]')
    panel = page.locator("#performance")
    expect(panel).to_have_attribute("data-period", "TODAY")
    before = int(panel.get_attribute("data-trade-count"))
    trades = page.locator('#perf-metrics [data-metric="trades"] .value')
    expect(trades).to_have_text(str(before))
    xrp = embedded.ids["XRP"]
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f'#positions-body tr[data-position-id="{xrp}"]').get_by_role(
        "button", name="Close").click()
    # The close goes through the action queue and the paper exchange, in the platform.
    expect(page.locator(f'#positions-body tr[data-position-id="{xrp}"]')).to_have_count(
        0, timeout=20_000)
    expect(trades).to_have_text(str(before + 1), timeout=5_000)
    expect(page.locator("#trades-body tr").first).to_contain_text("XRP/USDT")
    assert page.evaluate("window.__notReloaded") is True


OVERFLOWING = """() => {
  const width = window.innerWidth;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height) continue;
    if (box.right > width + 0.5 || box.left < -0.5) {
      out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className.baseVal ?? el.className}`
               + ` [${Math.round(box.left)}, ${Math.round(box.right)}]`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, out: out.slice(0, 20)};
}"""

SUMMARY_TEXT_OVERLAPS = """() => {
  const boxes = [];
  for (const el of document.querySelectorAll(".kpis .label, .kpis .value, .kpis .sub")) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const name = `${el.parentElement.querySelector(".label").textContent}/${el.className}`;
    for (const r of range.getClientRects()) if (r.width && r.height) boxes.push({el, r, name});
  }
  const hits = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.el === b.el) continue;
    const x = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
    const y = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
    if (x > 0.5 && y > 0.5) hits.push(`${a.name} × ${b.name}`);
  }
  return {boxes: boxes.length, hits};
}"""


@pytest.fixture
def phone(chromium):
    context = chromium.new_context(viewport=PHONE, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_on_a_phone_positions_are_cards_nothing_overlaps_and_every_tab_can_be_tapped(
        phone, embedded):
    log_in(phone, embedded.url, STAFF)
    expect(phone.locator("#performance")).to_have_attribute("data-loading", "false")
    expect(phone.locator("#trades-body tr").first).to_be_visible()
    overflow = phone.evaluate(OVERFLOWING)
    assert overflow["scrollWidth"] <= PHONE["width"], overflow
    assert overflow["out"] == [], overflow
    summary = phone.evaluate(SUMMARY_TEXT_OVERLAPS)
    assert summary["boxes"] >= 18 and summary["hits"] == [], summary
    # Positions are cards: no header row, and each card shows what a trader acts on.
    expect(phone.locator("#positions-table thead")).to_be_hidden()
    # (BTC: the platform's own risk check may close DOGE, seeded CRITICAL, meanwhile.)
    btc = phone.locator(f'#positions-body tr[data-position-id="{embedded.ids["BTC"]}"]')
    assert btc.evaluate("row => getComputedStyle(row).display") == "grid"
    for role in ('td.sym a', '[data-role="upnl"]', '[data-role="score"]',
                 '[data-role="countdown"]', 'button:has-text("Close")'):
        expect(btc.locator(role)).to_be_visible()
    expect(btc.locator("td.sym")).to_contain_text("LONG")
    for period in ("TODAY", "WEEK", "MONTH", "ALL"):
        tab = phone.locator(f'#period-tabs button[data-period="{period}"]')
        tab.click()  # Playwright refuses to click what another element covers
        expect(tab).to_have_attribute("aria-selected", "true")
        expect(phone.locator("#performance")).to_have_attribute("data-period", period)
    for unit in ("week", "month", "day"):
        tab = phone.locator(f'#profit-units button[data-unit="{unit}"]')
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")
    assert phone.evaluate(OVERFLOWING)["out"] == []
    for coin in ("DOGE", "LINK"):  # an open and a closed position page fit the phone too
        phone.goto(f"{embedded.url}/positions/{embedded.ids[coin]}/")
        expect(phone.locator("#price-chart svg")).to_be_visible()
        overflow = phone.evaluate(OVERFLOWING)
        assert overflow["scrollWidth"] <= PHONE["width"] and overflow["out"] == [], overflow


def test_a_closed_position_shows_what_it_realised_and_its_price_chart(page, embedded):
    log_in(page, embedded.url, VIEWER)
    page.goto(f"{embedded.url}/positions/{embedded.ids['LINK']}/")
    facts = page.locator("#pos-facts")
    expect(facts).to_contain_text("Realised PnL+22.21\u00a0USDT (+1.03\u00a0%)")
    expect(facts).to_contain_text("Exit price14.57")
    expect(facts).to_contain_text("Exit reasontimeout")
    expect(facts).to_contain_text("Held for4h 00m")
    expect(facts).not_to_contain_text("Unrealised")
    expect(page.locator("#pos-score [data-role=score]")).to_have_class("score none")
    chart = page.locator("#price-chart svg")
    expect(chart.locator(".candle")).not_to_have_count(0)
    expect(chart.locator("circle.marker.mark-entry")).to_have_count(1)
    expect(chart.locator("circle.marker.mark-exit")).to_have_count(1)
    expect(chart.locator("line.mark-warning")).to_have_count(1)
    expect(chart.locator("line.mark-timeout")).to_have_count(1)
    expect(page.locator("#actions-table tbody")).to_contain_text(
        "filled 150 @ 14.57 (slippage 0.014\u00a0%) · trade #")
    expect(page.locator("#health-count")).to_have_text(re.compile(r"^\d+ checks$"))


def test_a_stopped_server_greys_the_page_out_as_stale(page, stoppable):
    log_in(page, stoppable.url, VIEWER)
    expect(page.locator("#stale-banner")).to_be_hidden()
    code = stoppable.server.stop(timeout=90)  # SIGTERM: the graceful shutdown
    assert code == 0, stoppable.server.log.read_text()[-4000:]
    stale = page.locator("#stale-banner")
    expect(stale).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#stale-text")).to_contain_text(
        re.compile(r"stale since \d\d:\d\d:\d\d"))
    expect(page.locator("body")).to_have_attribute("data-stale", "true")
    expect(page.locator("#trading-status")).to_have_text("Trading: unknown")
    assert page.locator("#performance").evaluate(
        "node => getComputedStyle(node).filter") == "grayscale(1)"
