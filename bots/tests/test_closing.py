"""Closing a bot's position goes through the bot: forceexit, confirmation, escalation.

The scripted bot behaves as freqtrade does: ``forceexit`` makes it send its
``exit_fill`` webhook to the platform before it answers.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from bots.connections import bot_connection_create
from bots.models import BotTrade
from execution.models import Action, ActionKind, ActionState, CloseReason, Order, OrderPurpose
from execution.services import action_process, actions_sweep, run_inline
from lifecycle.models import Position, PositionState, Trade
from lifecycle.services import position_request_close
from lifecycle.services import timeout_pass_run as check_timeouts
from risk.models import AlertSeverity, RiskAlert
from tests.integration.conftest import paper_account, strategy_on

pytestmark = pytest.mark.django_db

S = PositionState
TIMEOUT_LIMITS = {"lifecycle": {"maxHoldingTimeMinutes": 2, "warningThresholdMinutes": 1}}


def _time_out(strategy, clock) -> Action:
    """The strategy's holding limit passes; the timeout pass queues the close."""
    strategy.live_trading = {**strategy.live_trading, **TIMEOUT_LIMITS}
    strategy.save(update_fields=["live_trading"])
    clock.shift(timedelta(minutes=3))
    assert check_timeouts().close_actions == 1
    return Action.objects.get()


def _process(action: Action) -> Action:
    return action_process(action.pk, drive=run_inline(sleep=lambda s: None))


def _sweep(clock, seconds: float) -> int:
    clock.shift(timedelta(seconds=seconds))
    return actions_sweep(drive=run_inline(sleep=lambda s: None))


def test_a_timed_out_position_is_closed_by_its_bot_once_and_as_a_timeout(bot, strategy, clock):
    bot.enter(1)
    action = _time_out(strategy, clock)
    action = _process(action)
    assert bot.calls == [("forceexit", 1)]
    position = Position.objects.get()
    assert (position.state, position.close_reason) == (S.CLOSED, CloseReason.TIMEOUT)
    trade = Trade.objects.get()
    # the bot's exit (force_exit) under the reason the platform asked for
    assert (trade.exit_reason, trade.exit_price, trade.quantity) == (
        "timeout", Decimal("1.0977"), Decimal("9.1"))
    assert trade.pnl == Decimal("-0.02179996")
    assert bot.trades[1]["exit_reason"] == "force_exit"
    assert (action.state, action.result["closed_by"], action.result["exit_reason"]) == (
        ActionState.DONE, "bot:ft-main", "force_exit")
    assert action.result["trade"] == trade.pk
    assert not Order.objects.exists()  # the platform sent nothing of its own


def test_an_unconfirmed_close_is_a_critical_alert_and_nothing_is_sent_without_fallback(
        bot, strategy, clock):
    bot.enter(1)
    bot.forceexit_mode = "accept"  # accepted, but the exit order does not fill
    action = _process(_time_out(strategy, clock))
    bot_trade = BotTrade.objects.get()
    asked_at = bot_trade.exit_requested_at
    assert (action.state, bot_trade.exit_action_id) == (ActionState.RUNNING, action.pk)
    assert bot_trade.exit_deadline == asked_at + timedelta(seconds=30)
    assert action.lease_until == asked_at + timedelta(seconds=5)
    for _ in range(5):  # looked at every 5 s until the deadline: the trade is still open
        assert _sweep(clock, 5) == 1
    assert not RiskAlert.objects.filter(kind="bot_close_unconfirmed").exists()
    assert _sweep(clock, 5) == 1  # 30 s: the deadline
    alert = RiskAlert.objects.get(kind="bot_close_unconfirmed")
    assert (alert.severity, alert.position_id) == (AlertSeverity.CRITICAL, Position.objects.get().pk)
    assert alert.message == ("Bot ft-main did not confirm the close of XRP/USDT within 30 s: no "
                             "exit fill reported, and the bot's trade is still open")
    assert not Order.objects.exists()
    assert [call for call in bot.calls if call[0] == "forceexit"] == [("forceexit", 1)]
    action.refresh_from_db()
    assert action.state == ActionState.RUNNING
    assert action.lease_until == asked_at + timedelta(seconds=60)  # asked again a period later
    bot.leave(1, reason="force_exit")  # the bot's exit fills at last
    assert Trade.objects.get().exit_reason == "timeout"
    action.refresh_from_db()
    assert action.state == ActionState.DONE
    assert RiskAlert.objects.get(pk=alert.pk).resolved_at is not None


def test_a_lost_exit_webhook_is_confirmed_from_the_bots_trade_record(bot, strategy, clock):
    bot.enter(1)
    bot.webhooks_dropped = {"exit_fill"}
    action = _process(_time_out(strategy, clock))
    assert action.state == ActionState.RUNNING
    assert bot.trades[1]["is_open"] is False  # the bot did exit
    assert _sweep(clock, 5) == 1
    trade = Trade.objects.get()
    assert (trade.exit_reason, trade.exit_price) == ("timeout", Decimal("1.0977"))
    assert trade.pnl == Decimal(str(bot.trades[1]["close_profit_abs"])) == Decimal("-0.02179996")
    assert bot.calls[-1] == ("trade", 1)
    assert Action.objects.get().state == ActionState.DONE


def test_a_bot_that_cannot_be_reached_is_asked_again_until_it_answers(bot, strategy, clock):
    bot.enter(1)
    bot.forceexit_mode = "unreachable"
    action = _process(_time_out(strategy, clock))
    bot_trade = BotTrade.objects.get()
    assert (bot_trade.exit_requested_at, bot_trade.exit_error) == (
        None, "forceexit: could not connect")
    bot.forceexit_mode = "fill"
    assert _sweep(clock, 5) == 1
    assert [c for c in bot.calls if c[0] == "forceexit"] == [("forceexit", 1), ("forceexit", 1)]
    assert Trade.objects.get().exit_reason == "timeout"
    action.refresh_from_db()
    assert action.state == ActionState.DONE


def test_a_trade_the_bot_already_closed_is_closed_from_its_record(bot, strategy, clock):
    bot.enter(1)
    bot.webhooks_dropped = {"exit_fill"}
    bot.leave(1, reason="stop_loss", rate=1.05)  # the bot's own exit; its webhook was lost
    _process(_time_out(strategy, clock))  # forceexit is refused: nothing to exit
    trade = Trade.objects.get()
    assert (trade.exit_reason, trade.exit_price) == ("risk", Decimal("1.05"))
    assert trade.pnl == Decimal(str(bot.trades[1]["close_profit_abs"]))
    assert Action.objects.get().state == ActionState.DONE


def test_a_trade_the_bot_does_not_know_raises_a_critical_alert(bot, strategy, clock):
    bot.enter(1)
    del bot.trades[1]  # the bot's database was reset
    _process(_time_out(strategy, clock))
    alert = RiskAlert.objects.get(kind="bot_trade_missing")
    assert alert.severity == AlertSeverity.CRITICAL
    assert Position.objects.get().state == S.CLOSING
    assert not Order.objects.exists()


def test_with_fallback_the_pipeline_closes_with_its_own_reduce_only_order(
        monkeypatch, web, clock, bot_env, staff_user):
    from bots import freqtrade
    from bots.tests.conftest import Connected, ScriptedBot

    account = paper_account()
    strategy = strategy_on(account, "ft-fallback",
                           bots={"fallbackDirectClose": True, "botCloseTimeoutSeconds": 10},
                           **TIMEOUT_LIMITS)
    connection, secret = bot_connection_create(
        name="ft-fb", strategy=strategy, api_url="http://127.0.0.1:18082",
        username_env="BOT_FT_USER", password_env="BOT_FT_PASSWORD", actor="test")
    scripted = ScriptedBot(web, Connected(connection, secret), clock, forceexit_mode="accept")
    monkeypatch.setattr(freqtrade, "bot_api_for", lambda c: scripted)
    scripted.enter(7, pair="BTC/USDT:USDT", amount=0.5, rate=50000.0)
    clock.shift(timedelta(minutes=3))
    check_timeouts()
    action = _process(Action.objects.get())
    assert action.state == ActionState.RUNNING
    assert _sweep(clock, 5) == 1  # looked: still open
    assert _sweep(clock, 5) == 1  # 10 s: unconfirmed → alert, then the pipeline's own close
    order = Order.objects.get()
    assert (order.client_order_id, order.purpose, order.reduce_only, order.side,
            order.quantity, order.status) == (
        f"close-{action.pk}", OrderPurpose.EMERGENCY_CLOSE, True, "sell", Decimal("0.5"),
        "filled")
    assert RiskAlert.objects.get(kind="bot_close_unconfirmed").severity == AlertSeverity.CRITICAL
    assert BotTrade.objects.get().fallback_at is not None
    trade = Trade.objects.get()
    assert trade.exit_reason == "timeout"
    action.refresh_from_db()
    assert action.state == ActionState.DONE
    assert [c for c in scripted.calls if c[0] == "forceexit"] == [("forceexit", 7)]


@pytest.mark.parametrize(("kind", "reason"), [
    (ActionKind.EMERGENCY_CLOSE, CloseReason.RISK),
    (ActionKind.EMERGENCY_CLOSE, CloseReason.MANUAL),
    (ActionKind.CLOSE_ON_SHUTDOWN, CloseReason.SHUTDOWN),
    (ActionKind.CLOSE, CloseReason.SIGNAL),
])
def test_every_kind_of_close_goes_through_the_bot(bot, clock, kind, reason):
    bot.enter(1)
    action, _ = position_request_close(position=Position.objects.get(), reason=reason,
                                             actor="someone", kind=kind)
    _process(action)
    assert bot.calls == [("forceexit", 1)]
    assert Trade.objects.get().exit_reason == reason
    assert not Order.objects.exists()


def test_an_operators_close_through_the_api_goes_through_the_bot(bot, clock, staff_api):
    bot.enter(1)
    position = Position.objects.get()
    response = staff_api.post(f"/api/lifecycle/positions/{position.pk}/close",
                              {"note": "flatten"}, format="json")
    assert response.status_code == 202, response.content
    _process(Action.objects.get())
    assert Trade.objects.get().exit_reason == "manual"
    assert bot.calls == [("forceexit", 1)]


def test_a_redelivered_close_task_does_not_ask_the_bot_twice(bot, strategy, clock):
    bot.enter(1)
    bot.forceexit_mode = "accept"
    action = _process(_time_out(strategy, clock))
    assert _process(action).state == ActionState.RUNNING  # claimed already: nothing runs
    assert [c for c in bot.calls if c[0] == "forceexit"] == [("forceexit", 1)]


def test_the_bots_app_registers_its_executor_for_bot_positions_only():
    from bots.closing import bot_close
    from lifecycle.close_executors import close_executor_for
    from lifecycle.models import PositionSource

    assert close_executor_for(Position(source=PositionSource.BOT)) is bot_close
    assert close_executor_for(Position(source=PositionSource.API)) is None
