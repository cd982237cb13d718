"""The sync: lost entry webhooks adopted, positions the bot no longer holds closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bots import tasks
from bots.models import BotConnection, BotState, BotTrade
from bots.selectors import bot_connections_health
from bots.sync import bot_connection_sync, bot_connections_due_for_sync
from bots.tests.conftest import T0, entry_fill_body, post
from lifecycle.models import Position, PositionState, Trade
from risk.models import AlertSeverity, RiskAlert

pytestmark = pytest.mark.django_db


def test_a_trade_whose_entry_webhook_was_lost_is_adopted_by_the_sync(bot, connected, clock):
    bot.webhooks_dropped = {"entry_fill"}
    bot.enter(1)
    assert not Position.objects.exists()
    result = bot_connection_sync(connected.connection)
    assert (result.bot_state, result.open_trades, result.adopted, result.closed,
            result.errors) == ("running", 1, [1], [], [])
    position = Position.objects.get()
    assert (position.symbol, position.side, position.quantity, position.entry_price,
            position.opened_at, position.external_ref) == (
        "XRP/USDT", "long", Decimal("9.1"), Decimal("1.0979"),
        datetime(2026, 12, 6, 6, 26, 40, 269000, tzinfo=UTC), "ft-main:1")
    assert BotTrade.objects.get().adopted_by == "sync"
    connection = BotConnection.objects.get()
    assert (connection.last_sync_at, connection.last_sync_error, connection.bot_state) == (
        T0 + timedelta(seconds=2), "", BotState.RUNNING)
    # the webhook arrives late after all: the same trade, nothing new
    late = post(bot.web, connected.url, entry_fill_body(
        connected.secret, open_date="2026-12-06 06:26:40.269933+00:00"))
    assert late.status_code == 200, late.content
    assert late.json()["created"] is False
    assert Position.objects.count() == 1
    assert bot_connection_sync(connected.connection).adopted == []


def test_a_position_the_bot_no_longer_holds_is_closed_from_its_trade_record(bot, connected,
                                                                          clock):
    bot.enter(1)
    bot.webhooks_dropped = {"exit_fill"}
    clock.shift(timedelta(minutes=7))
    bot.leave(1, reason="stop_loss", rate=1.04)
    result = bot_connection_sync(connected.connection)
    assert (result.open_trades, result.closed) == (0, [1])
    trade = Trade.objects.get()
    assert (trade.exit_reason, trade.exit_price, trade.closed_at) == (
        "risk", Decimal("1.04"), datetime(2026, 12, 6, 6, 33, 40, 269000, tzinfo=UTC))
    # the bot's record: (1.04 × 0.999 − 1.0979 × 1.001) × 9.1, rounded to 8 places
    assert trade.pnl == Decimal("-0.54634489") == Decimal(str(bot.trades[1]["close_profit_abs"]))
    assert bot_connection_sync(connected.connection).closed == []


def test_a_trade_partly_exited_is_still_the_same_trade_for_the_sync(bot, connected, clock):
    bot.enter(1)
    bot.leave(1, reason="partial_exit", amount=4.0)  # the bot now holds 5.1
    result = bot_connection_sync(connected.connection)
    assert (result.adopted, result.closed, result.errors) == ([], [], [])
    assert not RiskAlert.objects.filter(kind__startswith="bot_trade_conflict").exists()
    assert Position.objects.get().quantity == Decimal("5.1")


def test_a_reset_bot_reporting_another_trade_under_a_known_id_is_a_conflict(bot, connected,
                                                                           clock):
    bot.enter(1)
    bot.trades[1].update(pair="BTC/USDT", open_rate=50000.0)  # its database was reset
    result = bot_connection_sync(connected.connection)
    assert result.adopted == []
    assert "external_ref 'ft-main:1' was first used for a different request" in result.errors[0]
    assert RiskAlert.objects.get(kind="bot_trade_conflict:ft-main").severity == (
        AlertSeverity.WARNING)


def test_a_trade_the_bot_has_no_record_of_raises_a_critical_alert(bot, connected, clock):
    bot.enter(1)
    del bot.trades[1]
    result = bot_connection_sync(connected.connection)
    assert result.missing == [1]
    alert = RiskAlert.objects.get(kind="bot_trade_missing")
    assert (alert.severity, alert.position) == (AlertSeverity.CRITICAL, Position.objects.get())
    assert Position.objects.get().state == PositionState.OPEN


def test_an_unreachable_bot_is_recorded_and_shown_unhealthy(bot, connected, clock):
    bot_connection_sync(connected.connection)
    assert bot_connections_health()["ok"] is True
    bot.state_text = "unreachable"
    clock.shift(timedelta(seconds=60))
    result = bot_connection_sync(connected.connection)
    assert result.errors == ["show_config: could not connect"]
    connection = BotConnection.objects.get()
    assert (connection.bot_state, connection.last_sync_error) == (
        BotState.UNREACHABLE, "show_config: could not connect")
    alert = RiskAlert.objects.get(kind="bot_down:ft-main")
    assert alert.severity == AlertSeverity.WARNING
    health = bot_connections_health()
    assert health["ok"] is False
    [row] = health["connections"]
    assert row["problems"] == ["bot rest api unreachable", "sync: show_config: could not connect"]
    clock.shift(timedelta(seconds=121))
    assert bot_connections_health()["connections"][0]["problems"][1] == (
        "last synced 3 min ago (every 60 s)")
    bot.state_text = "running"
    bot_connection_sync(connected.connection)
    assert bot_connections_health()["ok"] is True
    assert RiskAlert.objects.get(pk=alert.pk).resolved_at is not None


def test_a_stopped_bot_is_a_critical_alert_from_the_sync(bot, connected, clock):
    bot.state_text = "stopped"
    bot_connection_sync(connected.connection)
    alert = RiskAlert.objects.get(kind="bot_down:ft-main")
    assert alert.severity == AlertSeverity.CRITICAL
    assert BotConnection.objects.get().bot_state == BotState.STOPPED


def test_connections_are_synced_every_bot_sync_seconds_and_claimed_once(connected, strategy,
                                                                      clock, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.sync_bot, "delay", sent.append)
    assert tasks.sync_due_bots() == 1
    assert sent == [connected.connection.pk]
    assert bot_connections_due_for_sync() == []  # claimed: the next beat sends nothing
    clock.shift(timedelta(seconds=59))
    assert bot_connections_due_for_sync() == []
    clock.shift(timedelta(seconds=1))
    assert bot_connections_due_for_sync() == [connected.connection.pk]
    strategy.live_trading = {"bots": {"botSyncSeconds": 5}}
    strategy.save(update_fields=["live_trading"])
    clock.shift(timedelta(seconds=5))
    assert bot_connections_due_for_sync() == [connected.connection.pk]
    BotConnection.objects.update(enabled=False)
    clock.shift(timedelta(seconds=5))
    assert bot_connections_due_for_sync() == []


def test_the_sync_task_is_registered_late_acknowledged_and_scheduled():
    from tradingsite.celery import app
    from tradingsite.schedule import all_periodic_specs

    assert {name for name in app.tasks if name.startswith("bots.")} == {
        "bots.tasks.sync_due_bots", "bots.tasks.sync_bot"}
    assert all(app.tasks[name].acks_late for name in ("bots.tasks.sync_due_bots",
                                                       "bots.tasks.sync_bot"))
    assert [(s.task, s.every_seconds) for s in all_periodic_specs()
            if s.task.startswith("bots.")] == [("bots.tasks.sync_due_bots", 5)]
