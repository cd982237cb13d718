"""Screenshots of the dashboard at desktop and laptop widths, for design review.

    .venv/bin/python -m tests.browser.screenshots [--port 8110] [--out var/screens]

Seeds a throw-away SQLite database with the browser tests' book, serves it with
daphne and captures the dashboard and a position page with headless Chromium.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from tradingsite.testing.live_server import CHROMIUM, CHROMIUM_ARGS, ROOT, asgi_server

SIZES = {"desktop": (1440, 900), "laptop": (1280, 800)}


def _prepare_database(db_path: Path) -> dict[str, int]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from tests.browser.seed import seed_book

    call_command("migrate", verbosity=0)
    book = seed_book(timezone.now())
    get_user_model().objects.create_user("operator", password="op-pass-123", is_staff=True,
                                         is_superuser=True)
    return {name: p.pk for name, p in book.positions.items()}


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
    env.pop("REDIS_URL", None)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    ids = _prepare_database(db_path)

    from playwright.sync_api import sync_playwright

    with asgi_server(env, port=args.port) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for size, (width, height) in SIZES.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{base}/")
            page.fill("#id_username", "operator")
            page.fill("#id_password", "op-pass-123")
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-live-state=open]")
            page.wait_for_selector("#performance[data-loading=false]")
            page.screenshot(path=str(out / f"dashboard-{size}.png"))
            page.screenshot(path=str(out / f"dashboard-{size}-full.png"), full_page=True)
            if size == "desktop":
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
            page.close()
        browser.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
