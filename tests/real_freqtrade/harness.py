"""A real freqtrade bot for the tests: its virtualenv, its config, its process, its webhooks.

freqtrade is never one of the project's requirements: it lives in a virtualenv of its
own (``var/freqtrade-venv``, or ``FREQTRADE_VENV``), created here with ``python -m venv``
and ``pip install freqtrade==2026.9`` on first use (about a minute, 770 MB) and reused
by every later run on the machine. The bot runs in dry-run against the project's
Bybit v5 emulator (spot, ``enable_ws: false``, every API URL pointed at it), with its
REST API on and its webhook — the README's block, as the platform issues it — sent
through ``WebhookRelay``, which forwards each webhook to the platform or loses it on
purpose.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings
from freqtrade_client import FtRestClient

FREQTRADE_VERSION = "2026.9"
INSTALL_TIMEOUT_SECONDS = 900
START_TIMEOUT_SECONDS = 60
STRATEGY_DIR = Path(__file__).resolve().parent / "strategies"
PAIR = "XRP/USDT"
STAKE = 10


class FreqtradeUnavailable(RuntimeError):
    """freqtrade could not be installed (no package index?): what was tried is in the text."""


def freqtrade_venv() -> Path:
    return Path(os.environ.get("FREQTRADE_VENV") or Path(settings.BASE_DIR) / "var"
                / "freqtrade-venv")


def _installed(venv: Path) -> bool:
    return (venv / "bin" / "freqtrade").exists() and any(
        venv.glob(f"lib/python*/site-packages/freqtrade-{FREQTRADE_VERSION}.dist-info"))


def ensure_freqtrade(venv: Path | None = None) -> Path:
    """The ``freqtrade`` program of the bot's own virtualenv, installed on first use.

    A lock file keeps two test runs on the machine from installing at once.
    """
    venv = venv or freqtrade_venv()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed(venv):
            steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                      f"freqtrade=={FREQTRADE_VERSION}"]]
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True,
                                      timeout=INSTALL_TIMEOUT_SECONDS)
                if done.returncode != 0:
                    raise FreqtradeUnavailable(
                        f"{' '.join(step)} failed ({done.returncode}): "
                        f"{(done.stderr or done.stdout)[-1500:]}")
    return venv / "bin" / "freqtrade"


# --- the webhook relay --------------------------------------------------------------------

@dataclass
class Delivery:
    at: float
    event: str
    trade_id: str
    status: int  # 0: lost on purpose


@dataclass
class WebhookRelay:
    """Forwards the bot's webhooks to the platform; those listed in ``lose`` are lost
    (the connection is closed unanswered, as a dropped network would), retries too."""

    target: str
    lose: set[tuple[str, str]] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {}
                key = (str(data.get("event", "")), str(data.get("trade_id", "")))
                if key in relay.lose:
                    relay.deliveries.append(Delivery(time.monotonic(), *key, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                request = urllib.request.Request(relay.target + self.path, data=body,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                relay.deliveries.append(Delivery(time.monotonic(), *key, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="webhook-relay").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def events(self, trade_id: str) -> list[tuple[str, int]]:
        return [(d.event, d.status) for d in self.deliveries if d.trade_id == trade_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the bot ---------------------------------------------------------------------------------

@dataclass
class RunningBot:
    process: subprocess.Popen
    client: FtRestClient
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a supervisor stops it (freqtrade then reports 'process died')."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def bot_config(*, exchange_url: str, webhook: dict[str, Any], api_port: int, user: str,
               password: str, workdir: Path) -> dict[str, Any]:
    """A dry-run spot bot on the emulator: REST API on, no websockets, market orders."""
    urls = {key: exchange_url for key in ("spot", "futures", "v2", "public", "private")}
    return {
        "bot_name": "platform-test", "initial_state": "running", "dry_run": True,
        "dry_run_wallet": 1000, "trading_mode": "spot", "timeframe": "5m",
        "max_open_trades": 3, "stake_currency": "USDT", "stake_amount": STAKE,
        "fiat_display_currency": "",
        "exchange": {"name": "bybit", "key": "", "secret": "", "enable_ws": False,
                     "ccxt_config": {"urls": {"api": urls}},
                     "ccxt_async_config": {"urls": {"api": urls}},
                     "pair_whitelist": [PAIR], "pair_blacklist": []},
        "pairlists": [{"method": "StaticPairList"}],
        "entry_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1,
                          "price_last_balance": 0.0, "check_depth_of_market": {"enabled": False}},
        "exit_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1},
        "order_types": {"entry": "market", "exit": "market", "emergency_exit": "market",
                        "force_entry": "market", "force_exit": "market", "stoploss": "market",
                        "stoploss_on_exchange": False},
        "unfilledtimeout": {"entry": 10, "exit": 10, "unit": "minutes"},
        "force_entry_enable": True,
        "api_server": {"enabled": True, "listen_ip_address": "127.0.0.1",
                       "listen_port": api_port, "username": user, "password": password,
                       "jwt_secret_key": "platform-test-jwt-secret-0123456789abcdef",
                       "ws_token": "platform-test-ws-token-0123456789", "CORS_origins": [],
                       "verbosity": "error"},
        "webhook": webhook,
        "internals": {"process_throttle_secs": 1},
        "db_url": f"sqlite:///{workdir / 'trades.sqlite'}",
        "user_data_dir": str(workdir / "user_data"),
        "strategy": "PlatformTestStrategy", "strategy_path": str(STRATEGY_DIR),
    }


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_bot(program: Path, config: dict[str, Any], workdir: Path) -> RunningBot:
    """Start freqtrade and wait until its REST API answers (about 2.5 s)."""
    (workdir / "user_data").mkdir(parents=True, exist_ok=True)
    config_file = workdir / "config.json"
    config_file.write_text(json.dumps(config, indent=1))
    log = workdir / "freqtrade.log"
    process = subprocess.Popen([str(program), "trade", "-c", str(config_file)], cwd=workdir,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    api = config["api_server"]
    client = FtRestClient(f"http://127.0.0.1:{api['listen_port']}", api["username"],
                          api["password"], timeout=5)
    bot = RunningBot(process, client, log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"freqtrade exited with {process.returncode}:\n{bot.tail()}")
        if not _listening(api["listen_port"]):
            time.sleep(0.2)  # polling a starting subprocess, not a test wait
            continue
        answer = client.show_config()
        if isinstance(answer, dict) and answer.get("state") == "running":
            return bot
        time.sleep(0.2)  # polling a starting subprocess, not a test wait
    bot.stop()
    raise TimeoutError(f"freqtrade did not answer within {START_TIMEOUT_SECONDS} s:\n"
                       f"{bot.tail()}")
