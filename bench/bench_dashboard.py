"""Dashboard: from a server-side event to the changed pixel in Chromium, 50 positions on screen.

    .venv/bin/python -m bench.bench_dashboard [--quick]

The embedded default (``manage.py runplatform``: SQLite, in-memory broker and channel
layer) runs in a subprocess on a fresh SQLite file seeded with 50 open positions;
headless Chromium shows the dashboard at 1440×900. Two kinds of events are timed:

* **from another process**: a separate process pushes ``health.updated`` for all 50
  positions (one of them with a new score) through ``tradingsite.live.send_now``, as a
  shell or a second process would; it goes through the live-event outbox, which the
  platform relays;
* **from the platform**: ``POST /api/trading/halt/`` and ``/resume/`` (the web
  process pushes ``trading.halted`` / ``trading.resumed`` itself).

The clock starts just before the push (or the request) and stops when the browser has
painted the change: a MutationObserver notes the change and two animation frames later
(the first frame after the change has been presented) takes the time. Both clocks are
the machine's wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from tradingsite.testing.live_server import CHROMIUM, CHROMIUM_ARGS, ROOT, platform_process

POSITIONS = 50
TARGET_P95_MS = 500.0
USER = ("bench-operator", "bench-pass-123")

SEED = """
import django, json
django.setup()
from datetime import timedelta
from decimal import Decimal
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
from tradingsite.testing.factories import ExchangeAccountFactory, PositionFactory, StrategyFactory
call_command("migrate", verbosity=0)
now = timezone.now()
account = ExchangeAccountFactory(name="bench-paper")
strategy = StrategyFactory(name="bench-5m", account=account,
                           live_trading={"lifecycle": {"maxHoldingTimeMinutes": 100000,
                                                       "warningThresholdMinutes": 90000}})
ids = [PositionFactory(strategy=strategy, symbol=f"C{n:02d}/USDT:USDT", quantity=Decimal("1"),
                       entry_price=Decimal("100"), last_price=Decimal("100"),
                       opened_at=now - timedelta(minutes=n), health_score=Decimal("80"),
                       danger_level="SAFE").pk for n in range(%(positions)d)]
get_user_model().objects.create_user(%(user)r, password=%(password)r, is_staff=True,
                                     is_superuser=True)
print(json.dumps(ids))
"""

SENDER = """
import django, json, sys, time, random
django.setup()
from tradingsite.live import send_now
ids, count, gap = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)
for n in range(count):
    target = ids[n % len(ids)]
    score = round(10 + n * 0.1, 1)
    entries = [{"id": pk, "score": score if pk == target else 80.0, "danger_level":
                "CRITICAL" if pk == target else "SAFE", "state": "OPEN"} for pk in ids]
    sent = time.time()
    send_now("health.updated", {"positions": entries})
    print(json.dumps({"value": f"{score:.1f}", "id": target, "sent": sent}), flush=True)
    time.sleep(gap + rng.uniform(0, gap))  # the relay's polling phase varies
"""

OBSERVER = """() => {
  window.__painted = [];
  const note = (key) => {
    requestAnimationFrame(() => requestAnimationFrame(() =>
      window.__painted.push({key, at: performance.timeOrigin + performance.now()})));
  };
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        const score = node.querySelector && node.querySelector('[data-role="score"]');
        if (score) note(`score:${node.dataset.positionId}:${score.textContent}`);
      }
    }
  }).observe(document.getElementById("positions-body"), {childList: true});
  const banner = document.getElementById("halt-banner");
  new MutationObserver(() => note(`halt:${banner.hidden ? "off" : "on"}`))
    .observe(banner, {attributes: true, attributeFilter: ["hidden"]});
}"""


def _env(root: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}", "REDIS_URL": "",
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings", "STATE_DIR": str(root / "state"),
            "LIVE_TRADING_FILE": str(root / "none.json"), "TRADING_ENV": "development",
            "DEBUG": "0", "LOG_LEVEL": "WARNING"}


def _python(code: str, env: dict[str, str], *args: str, timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def _token(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "manage.py", "api_token", USER[0]], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **env}, check=True)
    return out.stdout.strip().splitlines()[-1]  # the key alone on stdout


def _post(url: str, token: str, body: dict | None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def _wait_painted(page, key: str, timeout_s: float = 10.0) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = page.evaluate(f"() => (window.__painted.find(p => p.key === {key!r}) || {{}}).at")
        if found:
            return float(found)
        page.wait_for_timeout(20)
    return None


def _row(name: str, latencies: list[float], lost: int, size: str) -> dict:
    values = np.asarray(latencies) if latencies else np.asarray([np.nan])
    p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
    return {"workload": f"dashboard: server event → changed pixel ({name})", "size": size,
            "figure": f"p50 {p50:.0f} ms / p95 {p95:.0f} ms (max {np.max(values):.0f} ms)"
                      + (f", {lost} never shown" if lost else ""),
            "target": f"p95 ≤ {TARGET_P95_MS:.0f} ms",
            "met": bool(latencies) and not lost and p95 <= TARGET_P95_MS}


def run(quick: bool = False) -> list[dict]:
    from playwright.sync_api import sync_playwright

    events = 20 if quick else 100
    toggles = 6 if quick else 30
    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    env = _env(root)
    try:
        ids = json.loads(_python(SEED % {"positions": POSITIONS, "user": USER[0],
                                         "password": USER[1]}, env).strip().splitlines()[-1])
        token = _token(env)
        with platform_process(env, log_dir=root) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{server.url}/login/?next=/")
            page.fill("#id_username", USER[0])
            page.fill("#id_password", USER[1])
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-live-state=open]")
            page.wait_for_selector(f"#positions-body tr:nth-child({POSITIONS})")
            page.evaluate(OBSERVER)

            # From another process, through the outbox.
            sent = [json.loads(line) for line in _python(
                SENDER, env, json.dumps(ids), str(events), "0.15").splitlines() if line]
            outbox, lost = [], 0
            for event in sent:
                painted = _wait_painted(page, f"score:{event['id']}:{event['value']}")
                if painted is None:
                    lost += 1
                else:
                    outbox.append(painted - event["sent"] * 1000)

            # From the platform itself: the API halts and resumes trading.
            platform, missed = [], 0
            for n in range(toggles):
                halt = n % 2 == 0
                started = time.time()
                _post(f"{server.url}/api/trading/{'halt' if halt else 'resume'}/", token,
                      {"reason": f"bench {n}"} if halt else None)
                painted = _wait_painted(page, f"halt:{'on' if halt else 'off'}")
                page.evaluate("() => { window.__painted = []; }")
                if painted is None:
                    missed += 1
                else:
                    platform.append(painted - started * 1000)
            browser.close()
        size = f"{POSITIONS} positions"
        return [_row("another process, via the outbox", outbox, lost, f"{size}, {events} events"),
                _row("the platform, API halt/resume", platform, missed,
                     f"{size}, {toggles} events")]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    django.setup()
    from bench.__main__ import render

    print(render(run(quick=args.quick)))


if __name__ == "__main__":
    main()
