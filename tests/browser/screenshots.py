"""Screenshots of the dashboard at desktop, laptop and phone sizes, for design review.

    .venv/bin/python -m tests.browser.screenshots [--port 8110] [--out var/screens]

Seeds a throw-away SQLite database with the browser tests' book, serves it with
daphne and captures the dashboard, an open and a closed position page, and the stale state (the
server stopped) with headless Chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.browser.prepare import STAFF
from tradingsite.testing.live_server import CHROMIUM, CHROMIUM_ARGS, ROOT, asgi_process

SIZES = {"desktop": (1440, 900), "laptop": (1280, 800), "phone": (390, 844)}
ADMIN_PAGES = {"positions": "/admin/lifecycle/position/", "trades": "/admin/lifecycle/trade/",
               "orders": "/admin/execution/order/", "accounts": "/admin/execution/exchangeaccount/1/change/"}


def _prepare_database(env: dict[str, str]) -> dict[str, int]:
    """Seed the book into a fresh database in a process of its own; position ids by coin."""
    done = subprocess.run([sys.executable, "-m", "tests.browser.prepare"], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8110)
    parser.add_argument("--out", default=str(ROOT / "var" / "screens"))
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    db_path = out / "db.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{db_path}", "DJANGO_SETTINGS_MODULE": "tradingsite.settings"}
    os.environ.pop("REDIS_URL", None)
    ids = _prepare_database(env)

    from playwright.sync_api import sync_playwright

    with asgi_process(env, port=args.port) as server, sync_playwright() as pw:
        base = server.url
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        stale_pages = []
        for size, (width, height) in SIZES.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{base}/")
            page.fill("#id_username", STAFF[0])
            page.fill("#id_password", STAFF[1])
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-live-state=open]")
            page.wait_for_selector("#performance[data-loading=false]")
            page.screenshot(path=str(out / f"dashboard-{size}.png"))
            page.screenshot(path=str(out / f"dashboard-{size}-full.png"), full_page=True)
            if size == "desktop":
                for name, path in ADMIN_PAGES.items():
                    page.goto(f"{base}{path}")
                    page.screenshot(path=str(out / f"admin-{name}-{size}.png"), full_page=True)
                page.goto(f"{base}/")
                page.wait_for_selector("body[data-live-state=open]")
                page.on("dialog", lambda dialog: dialog.accept())
                page.click("#halt-button")
                page.fill("#halt-reason", "exchange maintenance 14:00-14:30 UTC")
                page.click("#halt-confirm")
                page.wait_for_selector("#halt-banner:not([hidden])")
                page.screenshot(path=str(out / "dashboard-desktop-halted.png"))
                page.click("#resume-button")
                page.wait_for_selector("#halt-banner[hidden]", state="attached")
            page.goto(f"{base}/positions/{ids['DOGE']}/")
            page.wait_for_selector("body[data-live-state=open]")
            page.screenshot(path=str(out / f"position-{size}.png"), full_page=True)
            page.goto(f"{base}/positions/{ids['LINK']}/")
            page.wait_for_selector("body[data-live-state=open]")
            page.screenshot(path=str(out / f"position-closed-{size}.png"), full_page=True)
            page.goto(f"{base}/")
            page.wait_for_selector("body[data-live-state=open]")
            page.wait_for_selector("#performance[data-loading=false]")
            stale_pages.append((size, page))
        # The server stops: every open page greys out under its "stale since" banner.
        server.stop()
        for size, page in stale_pages:
            page.wait_for_selector("body[data-stale=true]")
            page.screenshot(path=str(out / f"dashboard-{size}-stale.png"))
            page.close()
        browser.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
