"""Closing a bot's position through the bot: the close executor of ``PositionSource.BOT``.

The platform never sends its own order for a position a bot owns (the bot would
still believe its trade open: manual closes are not synced back, freqtrade#7606).
For a close action — timeout, risk, operator, guard or shutdown alike:

1. First run: the position moves to CLOSING with the action's reason, the bot trade
   records the action it answers and its deadline (now + ``botCloseTimeoutSeconds``),
   committed; then ``forceexit`` goes to the bot — outside any transaction, because
   the bot sends its ``exit_fill`` webhook *before* it answers, and that webhook must
   be able to close the position meanwhile.
2. The ``exit_fill`` webhook closes the position (the bot's price, PnL, and the
   reason asked for) and settles the action (``bots.services``).
3. Otherwise the action's lease is moved to when to look again (``RETRY_SECONDS``,
   the deadline at the latest) and the action sweep runs it again then: a forceexit
   the bot refused or did not receive is sent again; the bot's trade record shows the
   trade closed (its webhook was lost) →
   the position closes from it; the deadline passed → a CRITICAL alert and, with
   ``bots.fallbackDirectClose``, the pipeline closes with its own reduce-only order
   (the executor returns False); without it, the platform keeps asking and looking,
   one timeout period at a time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from bots import alerts, freqtrade
from bots.freqtrade import BotApiError
from bots.models import BotTrade
from bots.services import bot_trade_close_from_record, bots_config
from execution.models import Action, CloseReason
from execution.services import action_wait_until
from lifecycle.close_actions import close_actions_settle
from lifecycle.models import Position, PositionState
from lifecycle.services import position_begin_close
from tradingsite.errors import InvalidStateTransition

log = logging.getLogger(__name__)

S = PositionState
# Until the deadline the close is looked at this often (the action sweep's own period).
RETRY_SECONDS = 5


def bot_close(action: Action, position: Position) -> bool:
    """Close ``position`` through its bot; False: the pipeline closes it now instead."""
    bot_trade = BotTrade.objects.select_related("connection__strategy").filter(
        position_id=position.pk).first()
    if bot_trade is None:
        log.error("position %s is a bot's but has no bot trade: the pipeline closes it",
                  position.pk)
        return False
    if bot_trade.exit_action_id == action.pk and bot_trade.fallback_at is not None:
        return False  # the pipeline took this close over
    if bot_trade.exit_action_id != action.pk:
        return _ask(action, position, bot_trade)
    return _follow_up(action, bot_trade)


def _ask(action: Action, position: Position, bot_trade: BotTrade) -> bool:
    """Step 1: CLOSING and the deadline committed, then ``forceexit``."""
    now = timezone.now()
    if position.state != S.CLOSING:
        try:
            position_begin_close(position, reason=action.reason or CloseReason.MANUAL,
                                 actor=action.requested_by)
        except InvalidStateTransition:
            current = Position.objects.get(pk=position.pk)
            if current.state == S.CLOSED:
                close_actions_settle(current, result={"position": "already closed"})
                return True
            if current.state != S.CLOSING:
                raise
    deadline = now + timedelta(seconds=bots_config(bot_trade.connection).bot_close_timeout_seconds)
    BotTrade.objects.filter(pk=bot_trade.pk).update(
        exit_action=action, exit_requested_at=None, exit_deadline=deadline, exit_error="",
        fallback_at=None)
    bot_trade.refresh_from_db()
    _request_exit(bot_trade)
    _look_again(action, bot_trade)
    return True


def _follow_up(action: Action, bot_trade: BotTrade) -> bool:
    """Step 3: closed meanwhile, closed in the bot's records, or late."""
    position = Position.objects.get(pk=bot_trade.position_id)
    if position.state == S.CLOSED:
        close_actions_settle(position, result={"position": "closed by its bot"})
        return True
    if _closed_in_the_bots_records(bot_trade):
        return True
    now = timezone.now()
    if now < bot_trade.exit_deadline:
        if bot_trade.exit_requested_at is None:
            _request_exit(bot_trade)
        _look_again(action, bot_trade)
        return True
    cfg = bots_config(bot_trade.connection)
    alerts.raise_close_unconfirmed_alert(
        position, connection=bot_trade.connection, seconds=cfg.bot_close_timeout_seconds,
        detail=bot_trade.exit_error or "no exit fill reported, and the bot's trade is still open")
    if cfg.fallback_direct_close:
        BotTrade.objects.filter(pk=bot_trade.pk).update(fallback_at=now)
        log.warning("bot %s did not close trade %s in time: the pipeline closes position %s",
                    bot_trade.connection.name, bot_trade.trade_id, position.pk)
        return False
    if bot_trade.exit_requested_at is None:
        _request_exit(bot_trade)
    action_wait_until(action, now + timedelta(seconds=cfg.bot_close_timeout_seconds))
    return True


def _request_exit(bot_trade: BotTrade) -> None:
    """``forceexit`` the whole trade; a refusal is kept on the trade (and retried)."""
    try:
        freqtrade.bot_api_for(bot_trade.connection).forceexit(bot_trade.trade_id)
    except BotApiError as exc:
        BotTrade.objects.filter(pk=bot_trade.pk).update(exit_error=str(exc)[:500])
        bot_trade.exit_error = str(exc)[:500]
        if not exc.unreachable:  # refused: it may have exited already
            _closed_in_the_bots_records(bot_trade)
        return
    now = timezone.now()
    BotTrade.objects.filter(pk=bot_trade.pk, exit_requested_at__isnull=True).update(
        exit_requested_at=now, exit_error="")
    bot_trade.exit_requested_at, bot_trade.exit_error = now, ""


def _closed_in_the_bots_records(bot_trade: BotTrade) -> bool:
    """Whether the bot's record shows the trade closed (the position is then closed from it)."""
    try:
        record = freqtrade.bot_api_for(bot_trade.connection).trade(bot_trade.trade_id)
    except BotApiError as exc:
        if exc.not_found:
            alerts.raise_trade_missing_alert(Position.objects.get(pk=bot_trade.position_id),
                                             connection=bot_trade.connection,
                                             trade_id=bot_trade.trade_id)
        return False
    try:
        trade, _ = bot_trade_close_from_record(bot_trade, record)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.warning("bot %s trade %s: unreadable record (%s)", bot_trade.connection.name,
                    bot_trade.trade_id, exc)
        return False
    return trade is not None


def _look_again(action: Action, bot_trade: BotTrade) -> None:
    """Run the action again in ``RETRY_SECONDS`` (at the deadline at the latest): to read
    the bot's trade record, or to send a forceexit that failed again."""
    when: datetime = min(bot_trade.exit_deadline,
                         timezone.now() + timedelta(seconds=RETRY_SECONDS))
    action_wait_until(action, when)
