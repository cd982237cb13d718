"""A real freqtrade (2026.9, dry-run) supervised by the real platform.

Processes, as in production: the platform's web server (daphne) receives the bot's
webhooks, a Celery worker runs the close actions and the sync, freqtrade runs in its
own virtualenv against the Bybit v5 emulator (spot XRP/USDT, real recorded candles on
today's clock). Only the timeout pass is called from here, with its clock three minutes
ahead (the beat task calls the same service): nothing is slept, every wait polls for
an outcome with a deadline.

Runs in the PostgreSQL + Redis pass: the processes share the test's database and broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection as db_connection
from django.utils import timezone

from bots.connections import bot_connection_create
from bots.freqtrade import webhook_block
from bots.models import BotConnection, BotState, BotTrade
from bots.tasks import sync_bot
from conftest import REQUIRE_SERVICES, redis_url
from execution.models import Action, ActionState, Order
from execution.tests.bybit_emulator import BybitEmulator
from lifecycle.models import Position, PositionFill, PositionState, Trade
from lifecycle.services import position_request_close
from lifecycle.services import timeout_pass_run as check_timeouts
from risk.models import AlertSeverity, RiskAlert
from tests.real_freqtrade.harness import (
    PAIR,
    FreqtradeUnavailable,
    RunningBot,
    WebhookRelay,
    bot_config,
    ensure_freqtrade,
    start_bot,
)
from tests.scaleout.processes import celery_processes, database_url, wait_until
from tradingsite.celery import app as celery_app
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory
from tradingsite.testing.live_server import asgi_server, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration,
              pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CANDLES = Path(settings.BASE_DIR) / "execution" / "data" / "candles" / \
    "binance-futures_XRP-USDT_5m.csv"
BOT_ENV = {"BOT_E2E_USER": "platform", "BOT_E2E_PASSWORD": "e2e-password-of-the-test-bot"}
ENTRY_SECONDS = 2.0


@pytest.fixture(scope="module")
def freqtrade_program() -> Path:
    try:
        return ensure_freqtrade()
    except (FreqtradeUnavailable, OSError) as exc:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"freqtrade {exc.__class__.__name__}: {exc}")


@pytest.fixture(scope="module")
def emulator() -> Iterator[BybitEmulator]:
    with BybitEmulator(record_requests=False) as emu:
        emu.replay_candles("XRPUSDT", CANDLES)
        yield emu


@pytest.fixture(scope="module")
def platform(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    """daphne and a Celery worker on the test's database and Redis; yields the web URL."""
    broker = redis.Redis.from_url(redis_url())
    broker.flushdb()  # no message of an earlier test for this worker
    with django_db_blocker.unblock():
        database = database_url(db_connection.settings_dict)
    env = {**os.environ, **BOT_ENV, "DJANGO_SETTINGS_MODULE": "tradingsite.settings_test",
           "DATABASE_URL": database, "REDIS_URL": redis_url(), "LOG_LEVEL": "WARNING",
           "CHANNELS_PREFIX": f"freqtrade-test-{os.getpid()}"}
    logs = tmp_path_factory.mktemp("platform-logs")
    with asgi_server(env, log_dir=logs) as url, celery_processes(env, logs) as processes:
        processes.worker("worker", pool="threads", concurrency=2, queues=["celery"])
        wait_until(lambda: celery_app.control.ping(timeout=0.5), timeout=30,
                   what="the Celery worker answers")
        yield url
    broker.flushdb()
    broker.close()


@pytest.fixture
def relay(platform) -> Iterator[WebhookRelay]:
    relay = WebhookRelay(platform)
    yield relay
    relay.close()


@pytest.fixture
def connection(monkeypatch) -> tuple[BotConnection, str, int]:
    """A paper account's strategy with a two-minute holding limit, fed by the bot."""
    for name, value in BOT_ENV.items():
        monkeypatch.setenv(name, value)
    account = ExchangeAccountFactory(name="paper-ft")
    strategy = StrategyFactory(name="ft-xrp", account=account, live_trading={
        "lifecycle": {"maxHoldingTimeMinutes": 2, "warningThresholdMinutes": 1}})
    port = free_port()
    connection, secret = bot_connection_create(
        name="ft-e2e", strategy=strategy, api_url=f"http://127.0.0.1:{port}",
        username_env="BOT_E2E_USER", password_env="BOT_E2E_PASSWORD", actor="test")
    return connection, secret, port


@pytest.fixture
def bot(freqtrade_program, emulator, relay, connection, tmp_path) -> Iterator[RunningBot]:
    bot_connection, secret, port = connection
    config = bot_config(
        exchange_url=emulator.base_url, api_port=port, user=BOT_ENV["BOT_E2E_USER"],
        password=BOT_ENV["BOT_E2E_PASSWORD"], workdir=tmp_path,
        webhook=webhook_block(bot_connection, secret=secret, base_url=relay.url)["webhook"])
    running = start_bot(freqtrade_program, config, tmp_path)
    yield running
    running.stop()


def _position_of(trade_id: int) -> Position | None:
    return Position.objects.filter(bot_trade__trade_id=trade_id).first()


def test_the_bots_entry_is_supervised_at_once_and_the_holding_limit_closes_it_through_forceexit(
        bot, relay, connection):
    started = time.monotonic()
    entered = bot.client.forceenter(PAIR, "long")
    assert isinstance(entered, dict) and "trade_id" in entered, (entered, bot.tail())
    trade_id = entered["trade_id"]
    position = wait_until(lambda: _position_of(trade_id), timeout=ENTRY_SECONDS,
                          what="the bot's entry becomes a supervised position")
    supervised_after = time.monotonic() - started
    assert supervised_after < ENTRY_SECONDS
    assert (position.symbol, position.side, position.quantity, position.entry_price,
            position.source, position.state) == (
        PAIR, "long", Decimal(str(entered["amount"])), Decimal(str(entered["open_rate"])),
        "bot", PositionState.OPEN)

    asked = time.monotonic()
    assert check_timeouts(now=timezone.now() + timedelta(minutes=3)).close_actions == 1
    closed = wait_until(
        lambda: Position.objects.filter(pk=position.pk, state=PositionState.CLOSED).first(),
        timeout=20, what="the timeout close goes through the bot")
    closed_after = time.monotonic() - asked

    record = bot.client.trade(trade_id)
    assert (record["is_open"], record["exit_reason"]) == (False, "force_exit"), record
    trade = Trade.objects.get()
    assert (trade.position_id, trade.exit_reason, trade.quantity) == (
        closed.pk, "timeout", Decimal(str(entered["amount"])))
    assert trade.exit_price == Decimal(str(record["close_rate"]))
    assert trade.pnl == Decimal(str(record["close_profit_abs"]))
    # the trade ended once: one exit fill here, one closed trade and nothing open there
    assert PositionFill.objects.filter(position=closed, kind="exit").count() == 1
    assert not Order.objects.exists()
    action = Action.objects.get()
    assert (action.state, action.result["closed_by"], action.result["exit_reason"]) == (
        ActionState.DONE, "bot:ft-e2e", "force_exit")
    assert bot.client.status() == []
    assert bot.client.trades()["trades_count"] == 1
    assert [e for e, _ in relay.events(str(trade_id))] == ["entry", "entry_fill", "exit",
                                                           "exit_fill"]
    print(f"\nreal freqtrade: supervised {supervised_after * 1000:.0f} ms after forceenter; "
          f"closed {closed_after * 1000:.0f} ms after the timeout pass queued the close")


def test_an_entry_webhook_lost_on_purpose_is_recovered_by_the_sync(bot, relay, connection):
    bot_connection, _, _ = connection
    relay.lose.add(("entry_fill", "1"))
    entered = bot.client.forceenter(PAIR, "long")
    assert entered["trade_id"] == 1, entered
    lost = wait_until(lambda: [s for e, s in relay.events("1") if e == "entry_fill"],
                      timeout=10, what="the entry_fill webhook is sent (and lost)")
    assert set(lost) == {0}
    assert _position_of(1) is None
    sync_bot.delay(bot_connection.pk)
    position = wait_until(lambda: _position_of(1), timeout=15,
                          what="the sync adopts the trade")
    assert BotTrade.objects.get().adopted_by == "sync"
    assert (position.quantity, position.entry_price) == (
        Decimal(str(entered["amount"])), Decimal(str(entered["open_rate"])))
    # an adopted position closes through the bot like any other
    position_request_close(position=position, reason="manual", actor="operator")
    wait_until(lambda: Trade.objects.first(), timeout=20, what="the operator's close")
    assert Trade.objects.get().exit_reason == "manual"
    assert bot.client.trade(1)["exit_reason"] == "force_exit"


def test_the_bot_stopped_raises_a_critical_alert(bot, connection):
    bot_connection, _, _ = connection
    wait_until(lambda: BotConnection.objects.filter(pk=bot_connection.pk,
                                                    bot_state=BotState.RUNNING).exists(),
               timeout=10, what="the bot's 'running' status webhook")
    bot.stop()  # SIGTERM, as a supervisor stops it
    alert = wait_until(lambda: RiskAlert.objects.filter(kind="bot_down:ft-e2e").first(),
                       timeout=10, what="the 'process died' webhook raises the alert")
    assert alert.severity == AlertSeverity.CRITICAL
    assert "process died" in alert.message
    assert BotConnection.objects.get(pk=bot_connection.pk).bot_state == BotState.DIED
