"""The real ``runplatform`` process: SIGTERM with open orders, a hanging exchange, kill -9.

Orders are placed inside the platform process through its API, as the bot would.
The Bybit emulator runs in this test process: it is the exchange that outlives a
killed platform (a paper book lives and dies with the process that holds it), so
after the restart the test can ask it what really happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from conftest import redis_url
from execution.tests.bybit_emulator import BybitEmulator
from operations.tests.test_runplatform import MANAGE, Running, _free_port

pytestmark = pytest.mark.slow

TOKEN = "0123456789abcdef0123456789abcdef01234567"
SYMBOL = "BTC/USDT:USDT"
WAIT_SECONDS = 20
# A hung exchange call ends after this (ccxt's request timeout), longer than the 2 s
# shutdown timeout of the hanging-exchange test; the platform must exit before it ends
# (runplatform abandons the hung worker thread once the snapshot is written).
EXCHANGE_TIMEOUT_SECONDS = 5
PAPER_CONFIG = {
    "feed": {"type": "manual", "prices": {SYMBOL: "50000"}},
    "markets": {SYMBOL: {"amountStep": "0.001", "priceStep": "0.1", "minAmount": "0.001"}},
    "faults": [{"on": "place", "kind": "stay_open", "times": 10}],
}
SEED = """
from django.contrib.auth import get_user_model
from tradingsite.models import ApiToken
from tradingsite.tokens import token_digest
from execution.models import ExchangeAccount
from lifecycle.models import Strategy

user = get_user_model().objects.create_user("operator", is_staff=True, is_superuser=True)
ApiToken.objects.create(user=user, prefix={token!r}[:8], digest=token_digest({token!r}))
paper = ExchangeAccount.objects.create(name="paper-main", exchange_id="paper",
                                       paper_config={paper_config!r})
Strategy.objects.create(name="paper-s", account=paper)
bybit = ExchangeAccount.objects.create(
    name="bybit-emu", exchange_id="bybit", api_base_url={base_url!r},
    api_key_env="EXCHANGE_EMU_BYBIT_KEY", api_secret_env="EXCHANGE_EMU_BYBIT_SECRET")
Strategy.objects.create(name="bybit-s", account=bybit)
"""


@pytest.fixture(scope="module")
def emulator():
    # A held-back answer ("timeout" faults) stays held this long: longer than any test.
    with BybitEmulator(hold_seconds=40) as emu:
        yield emu


def _env(tmp: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DJANGO_SETTINGS_MODULE="tradingsite.settings", TRADING_ENV="development",
               DATABASE_URL=f"sqlite:///{db}", VAR_DIR=str(tmp / "var"),
               STATE_DIR=str(tmp / "state"), PYTHONUNBUFFERED="1",
               EXCHANGE_EMU_BYBIT_KEY="emulator-key", EXCHANGE_EMU_BYBIT_SECRET="emulator-secret",
               EXCHANGE_TIMEOUT_MS=str(EXCHANGE_TIMEOUT_SECONDS * 1000), EXCHANGE_ENABLE_RATE_LIMIT="false",
               LIVE_TRADING__SHUTDOWN__SHUTDOWN_TIMEOUT_SECONDS="10")
    if os.environ.get("REDIS_URL"):
        env.update(REDIS_URL=redis_url(), CHANNELS_PREFIX=f"shutdown-test-{os.getpid()}")
    return env


@pytest.fixture(scope="module")
def template(tmp_path_factory, emulator) -> Path:
    """A migrated SQLite database with a staff token, a paper and an emulated Bybit account."""
    tmp = tmp_path_factory.mktemp("shutdown-template")
    db = tmp / "template.sqlite3"
    env = _env(tmp, db)
    subprocess.run([*MANAGE, "migrate", "--noinput", "-v", "0"], env=env, check=True,
                   timeout=120, cwd=settings.BASE_DIR)
    seed = SEED.format(token=TOKEN, paper_config=PAPER_CONFIG,
                       base_url=emulator.base_url + "/")
    subprocess.run([*MANAGE, "shell", "-c", seed], env=env, check=True, timeout=120,
                   cwd=settings.BASE_DIR)
    return db


class Platform(Running):
    """``runplatform`` plus the bot's side of the API (token auth, JSON)."""

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def place(self, **order: str) -> dict[str, Any]:
        status, body = self.api("POST", "execution/orders/place", {"symbol": SYMBOL, **order})
        assert status == 202, body
        return body

    def wait_for(self, order: dict[str, Any], status: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            _, current = self.api("GET", f"execution/orders/{order['id']}")
            if current["status"] == status:
                return current
            time.sleep(0.1)
        pytest.fail(f"order {order['client_order_id']} not {status} within {WAIT_SECONDS} s: "
                    f"{current}\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``sig``; (exit code, seconds until the process ended)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.finish()
        except subprocess.TimeoutExpired:
            pytest.fail(f"runplatform did not exit after {sig!r}:\n{self.output}")
        return code, time.monotonic() - started


@dataclass
class Site:
    tmp: Path
    env: dict[str, str]
    db: Path
    started: list[Platform]

    def start(self, **env: str) -> Platform:
        platform = Platform({**self.env, **env}, _free_port())
        self.started.append(platform)
        platform.wait_until_serving("/admin/login/")
        return platform

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql, params).fetchall()

    @property
    def snapshot(self) -> dict[str, Any]:
        return json.loads((self.tmp / "state" / "snapshot.json").read_text(encoding="utf-8"))


@pytest.fixture
def site(template, tmp_path, emulator):
    """A fresh copy of the template database and state directory for one test."""
    emulator.reset()
    if os.environ.get("REDIS_URL"):  # no message of another test may reach this platform
        import redis

        client = redis.Redis.from_url(redis_url())
        client.flushdb()
        client.close()
    db = tmp_path / "db.sqlite3"
    shutil.copyfile(template, db)
    site = Site(tmp_path, _env(tmp_path, db), db, [])
    yield site
    for platform in site.started:
        platform.kill()


def test_sigterm_cancels_open_orders_writes_the_snapshot_and_exits_0(site):
    platform = site.start()
    orders = [platform.place(strategy="paper-s", side="buy", quantity="0.5"),
              platform.place(strategy="paper-s", side="sell", quantity="0.2")]
    for order in orders:
        platform.wait_for(order, "open")

    code, seconds = platform.stop()

    assert code == 0, platform.output
    assert seconds < 10
    ids = [order["client_order_id"] for order in orders]
    assert site.rows("SELECT client_order_id, status FROM execution_order ORDER BY id") == [
        (ids[0], "cancelled"), (ids[1], "cancelled")]
    snapshot = site.snapshot
    assert (snapshot["clean"], snapshot["unfinished"], snapshot["orders"]) == (True, [], [])
    assert snapshot["reason"] == "SIGTERM"
    assert snapshot["trading"]["halted"] is True
    tail = platform.lines[platform.lines.index("stopping (SIGTERM) ..."):]
    assert tail[:5] == ["stopping (SIGTERM) ...",
                        "  shutdown hook: operations.shutdown.platform_shutdown",
                        "    halt entries: new entries refused",
                        f"    cancel open orders: {ids[0]}: cancelled",
                        f"    cancel open orders: {ids[1]}: cancelled"]
    assert tail[-1] == "stopped cleanly"

    again = site.start()  # the next start reads the snapshot and lifts the shutdown's halt
    assert "    shutdown halt lifted" in again.lines
    assert any(line.startswith("    last snapshot: ") and line.endswith(
        "stopped cleanly; open orders: 0, open positions: 0") for line in again.lines)
    assert site.rows("SELECT trading_halted FROM tradingsite_platformstate") == [(0,)]

    asked = subprocess.run([*MANAGE, "shutdown_platform", "--wait", "15"], env=site.env,
                           cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=30)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert asked.stdout.splitlines()[0] == f"sent SIGTERM to runplatform (pid {again.proc.pid})"
    assert again.finish() == 0, again.output
    assert "stopping (SIGTERM) ..." in again.lines


def test_a_hanging_exchange_call_still_gets_the_snapshot_written_and_exits_1(site, emulator):
    platform = site.start(LIVE_TRADING__SHUTDOWN__SHUTDOWN_TIMEOUT_SECONDS="2")
    order = platform.place(strategy="bybit-s", side="buy", quantity="0.01",
                           order_type="limit", price="40000")
    platform.wait_for(order, "open")
    emulator.fail_next("v5/order/cancel", "timeout", times=5)  # the cancel never answers

    code, seconds = platform.stop()

    assert code == 1, platform.output
    assert 2 <= seconds < 2 + EXCHANGE_TIMEOUT_SECONDS  # not held up by the hung call
    snapshot = site.snapshot
    assert (snapshot["clean"], snapshot["unfinished"]) == (
        False, ["cancel open orders", "close open positions"])
    assert [(o["client_order_id"], o["status"]) for o in snapshot["orders"]] == [
        (order["client_order_id"], "cancelling")]
    # the shutdown's cancel, and maybe the worker's next step of the CANCELLING order
    assert emulator.calls("v5/order/cancel") in (1, 2)
    assert ("    unfinished (past shutdownTimeoutSeconds=2): cancel open orders, close open "
            "positions") in platform.lines
    assert platform.lines[-1] == "stopped with exit code 1"


def test_a_platform_killed_while_the_exchange_takes_its_order_recovers_it_exactly_once(
        site, emulator):
    platform = site.start()
    emulator.fail_next("v5/order/create", "timeout_after_accept")  # accepted, answer held
    order = platform.place(strategy="bybit-s", side="buy", quantity="0.01")
    link_id = order["client_order_id"]
    assert emulator.wait_for_order(link_id, WAIT_SECONDS), platform.output

    platform.proc.send_signal(signal.SIGKILL)  # kill -9 while the placement waits
    assert platform.finish() == -signal.SIGKILL
    assert site.rows("SELECT status, attempts, exchange_order_id FROM execution_order") == [
        ("submitting", 1, "")]

    again = site.start()  # recovery runs before the worker takes any task

    [on_exchange] = emulator.orders_with_link_id(link_id)
    assert emulator.calls("v5/order/create") == 1
    assert site.rows("SELECT status, exchange_order_id, filled_quantity FROM execution_order"
                     ) == [("filled", on_exchange["orderId"], 0.01)]
    assert site.rows("SELECT symbol, side, quantity, state, source FROM lifecycle_position") == [
        (SYMBOL, "long", 0.01, "OPEN", "fill")]
    assert any("ended without a clean stop: crashed or killed" in line for line in again.lines)
    assert any(line.startswith(f"      {link_id} (entry buy 0.01 {SYMBOL}): submitting → "
                               "filled: ") for line in again.lines), again.output
    assert "    positions of bybit-emu: symbols matching: 1, differing: 0" in again.lines
    status, tracked = again.api("GET", "lifecycle/tracked-positions")
    assert status == 200 and [p["symbol"] for p in tracked["results"]] == [SYMBOL]
    assert again.stop()[0] == 0
