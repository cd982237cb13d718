"""The bots' write path: webhooks, hand-overs and exits (connections: ``bots.connections``;
the sync: ``bots.sync``; closes the platform asks for: ``bots.closing``).

A bot's trade becomes a supervised position through the platform's hand-over
service (``position_hand_over``, source ``BOT``): idempotent by reference
(``<connection>:<trade id>``), so a webhook, its retries and the sync all land on
one position, and the same trade reported differently is a ``RequestMismatch``
(409). The bot's own exits close the position with the bot's exit price, its exit
reason mapped (``platform_exit_reason``) and its realised PnL; the closes the
platform asks for go through the bot (``bots.closing``). Every webhook is answered
from the database alone: the bot waits for the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from analytics.importers import FREQTRADE_RISK_EXITS
from bots import alerts
from bots.inputs import FreqtradeEvent
from bots.models import BotConnection, BotState, BotTrade
from execution.models import MONEY, QTY, CloseReason
from lifecycle.close_actions import close_actions_settle
from lifecycle.models import Position, PositionSide, PositionSource, PositionState, Trade
from lifecycle.services import position_apply_close_fill, position_begin_close, position_hand_over
from tradingsite.errors import RequestMismatch
from tradingsite.live_config import BotsConfig, LiveConfigError, site_config

log = logging.getLogger(__name__)

S = PositionState
QUANTITY_STEP = Decimal(1).scaleb(-QTY["decimal_places"])
PRICE_STEP = Decimal(1).scaleb(-MONEY["decimal_places"])
# Exits a trader (or freqtrade's own emergency) forced: the platform's reason when it asked.
FORCED_EXITS = {"force_exit", "force_sell", "emergency_exit", "emergency_sell"}


def bots_config(connection: BotConnection) -> BotsConfig:
    """The ``bots`` config of the strategy the connection feeds (site config if it is invalid)."""
    try:
        return connection.strategy.effective_config().bots
    except LiveConfigError:
        log.error("bot %s: strategy %s has invalid live-trading overrides; using the site "
                  "config", connection.name, connection.strategy.name)
        return site_config().bots


def bot_actor(connection: BotConnection) -> str:
    return f"bot:{connection.name}"


# --- bot state (status webhooks and the sync) ----------------------------------------------

def bot_state_from_status(text: str) -> str | None:
    """freqtrade's status text (``running``, ``paused``, ``stopped``, ``process died``,
    ``running after config reloaded``) as a ``BotState``; None for other messages."""
    words = text.strip().lower().split()
    if words[:2] == ["process", "died"]:
        return BotState.DIED
    return {"running": BotState.RUNNING, "paused": BotState.PAUSED,
            "stopped": BotState.STOPPED}.get(words[0] if words else "")


def bot_state_record(connection: BotConnection, state: str, *, detail: str = "") -> None:
    """What the bot is doing now; a bot that no longer manages its trades raises an alert.

    Stopped or died: CRITICAL (closes through it cannot happen); unreachable from the
    sync: WARNING. Heard running (or paused) again: the alert is resolved.
    """
    now = timezone.now()
    changed = BotConnection.objects.filter(pk=connection.pk).exclude(bot_state=state).update(
        bot_state=state, bot_state_at=now)
    if changed:
        connection.bot_state, connection.bot_state_at = state, now
    if state in BotState.down():
        label = BotState(state).label.lower()
        alerts.raise_bot_down_alert(
            connection, critical=state != BotState.UNREACHABLE,
            message=f"{label}{f' ({detail})' if detail else ''}: the positions it handed over "
                    "are not closed by it until it runs again")
    elif state in (BotState.RUNNING, BotState.PAUSED):
        alerts.resolve_bot_down_alert(connection)


# --- webhooks --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookResult:
    """What a webhook did (the answer the bot gets)."""

    event: str
    created: bool = False
    trade_id: int | None = None
    position: int | None = None
    state: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event, "trade_id": self.trade_id, "position": self.position,
                "state": self.state, "created": self.created, "note": self.note}


def bot_webhook_receive(connection: BotConnection, event: dict[str, Any]) -> WebhookResult:
    """Act on one freqtrade webhook (already authenticated and validated).

    ``entry_fill`` hands the trade over; ``exit_fill`` reduces or closes its position;
    ``status`` records the bot's state; the other events are recorded as heard. A
    conflicting report raises ``RequestMismatch`` (and an alert).
    """
    kind = event["event"]
    BotConnection.objects.filter(pk=connection.pk).update(last_webhook_at=timezone.now(),
                                                          last_webhook_event=kind)
    try:
        if kind == FreqtradeEvent.ENTRY_FILL:
            return _entry_filled(connection, event)
        if kind == FreqtradeEvent.EXIT_FILL:
            return _exit_filled(connection, event)
    except RequestMismatch as exc:  # answered 409; the operator sees it too
        alerts.raise_trade_conflict_alert(connection, detail=str(exc))
        raise
    if kind == FreqtradeEvent.STATUS:
        state = bot_state_from_status(event["status"])
        if state is not None:
            bot_state_record(connection, state, detail=event["status"])
        return WebhookResult(kind, state=state, note=event["status"])
    if kind == FreqtradeEvent.EXIT_CANCEL:
        BotTrade.objects.filter(connection=connection, trade_id=event["trade_id"],
                                exit_action__isnull=False).update(
            exit_error="the bot cancelled its exit order")
    bot_trade = BotTrade.objects.filter(connection=connection,
                                        trade_id=event.get("trade_id")).first()
    return WebhookResult(kind, trade_id=event.get("trade_id"),
                         position=bot_trade.position_id if bot_trade else None,
                         note="recorded")


def _entry_filled(connection: BotConnection, event: dict[str, Any]) -> WebhookResult:
    bot_trade, created = bot_trade_adopt(
        connection, trade_id=event["trade_id"], pair=event["pair"],
        side=PositionSide.SHORT if event["direction"] == "Short" else PositionSide.LONG,
        amount=event["amount"], open_rate=event["open_rate"], opened_at=event["open_date"],
        adopted_by=BotTrade.AdoptedBy.WEBHOOK)
    position = bot_trade.position
    return WebhookResult(FreqtradeEvent.ENTRY_FILL, created=created, trade_id=bot_trade.trade_id,
                         position=position.pk, state=position.state,
                         note="handed over" if created else "already handed over")


def _exit_filled(connection: BotConnection, event: dict[str, Any]) -> WebhookResult:
    """An exit fill of the bot's: adopt the trade first if its entry webhook was lost."""
    bot_trade, _ = bot_trade_adopt(
        connection, trade_id=event["trade_id"], pair=event["pair"],
        side=PositionSide.SHORT if event["direction"] == "Short" else PositionSide.LONG,
        amount=None, open_rate=event["open_rate"], opened_at=event["open_date"],
        fallback_amount=event["amount"], adopted_by=BotTrade.AdoptedBy.WEBHOOK)
    _, note = bot_trade_apply_exit(
        bot_trade, quantity=event["amount"], price=event["close_rate"],
        closed_at=event["close_date"], bot_reason=event["exit_reason"],
        profit=event["profit_amount"], final=event["is_final_exit"])
    position = Position.objects.get(pk=bot_trade.position_id)
    return WebhookResult(FreqtradeEvent.EXIT_FILL, trade_id=bot_trade.trade_id,
                         position=position.pk, state=position.state, note=note)


# --- hand-over and exits (webhooks, the sync and the closes share these) --------------------

def bot_quantity(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(QUANTITY_STEP)


def bot_price(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(PRICE_STEP)


def bot_trade_adopt(connection: BotConnection, *, trade_id: int, pair: str, side: str,
                    amount: Decimal | None, open_rate: Decimal, opened_at: datetime,
                    adopted_by: str, fallback_amount: Decimal | None = None
                    ) -> tuple[BotTrade, bool]:
    """The supervised position of a bot's trade, handed over now if it is new.

    ``(bot_trade, created)``. The trade's reference is ``<connection>:<trade id>``;
    a trade already handed over is compared through the hand-over service (pair,
    side, amount, price, opening time): the same report returns it, another is a
    ``RequestMismatch``. ``amount`` None (an exit report) compares no amount and, if
    the entry was never reported, hands over ``fallback_amount``. The entry fee is
    not known from a webhook: it is counted in the exit fees (the realised PnL is the
    bot's either way).
    """
    existing = BotTrade.objects.select_related("position__strategy").filter(
        connection=connection, trade_id=trade_id).first()
    strategy = existing.position.strategy if existing else connection.strategy
    quantity = amount if amount is not None else (
        existing.position.initial_quantity if existing else fallback_amount)
    with transaction.atomic():
        position, created = position_hand_over(
            strategy=strategy, symbol=pair, side=side, quantity=bot_quantity(quantity),
            entry_price=bot_price(open_rate), opened_at=opened_at, entry_fee=Decimal("0"),
            external_ref=f"{connection.name}:{trade_id}", actor=bot_actor(connection),
            source=PositionSource.BOT)
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                bot_trade = BotTrade.objects.create(connection=connection, trade_id=trade_id,
                                                    position=position, adopted_by=adopted_by)
        except IntegrityError:  # another report of the same trade got there first
            bot_trade = BotTrade.objects.get(connection=connection, trade_id=trade_id)
            return bot_trade, False
    return bot_trade, created


def platform_exit_reason(bot_reason: str, asked: str) -> str:
    """The trade's exit reason for a bot's exit reason.

    A forced exit is the reason the platform asked for (``timeout``, ``risk``,
    ``manual``, ``shutdown``…), or ``manual`` when someone forced it in the bot; stop
    losses and liquidations are ``risk``; every other reason (ROI, exit signal, custom
    exits) is ``signal``.
    """
    reason = bot_reason.strip().lower()
    if reason in FORCED_EXITS:
        return asked or CloseReason.MANUAL
    if reason in FREQTRADE_RISK_EXITS:
        return CloseReason.RISK
    return CloseReason.SIGNAL


def _realised_so_far(position: Position) -> Decimal:
    """The PnL of the exits already applied, net of their fees and their share of the entry fee."""
    if not position.closed_quantity:
        return Decimal("0")
    direction = 1 if position.side == PositionSide.LONG else -1
    gross = direction * (position.exit_value - position.entry_price * position.closed_quantity)
    entry_share = position.entry_fee * position.closed_quantity / position.initial_quantity
    return gross - position.exit_fees - entry_share


def exit_fee(position: Position, *, quantity: Decimal, price: Decimal, profit: Decimal) -> Decimal:
    """The fee that makes this exit's realised PnL the bot's ``profit`` for it.

    The bot reports PnL net of its fees (and, on futures, funding); the platform
    writes PnL as gross minus fees, so the difference is this exit's fee. A bot that
    earned more than the gross (funding received) has no negative fee: the fee is 0
    and the platform's PnL is the gross.
    """
    direction = 1 if position.side == PositionSide.LONG else -1
    gross = direction * (price - position.entry_price) * quantity
    entry_share = position.entry_fee * quantity / position.initial_quantity
    return max(Decimal("0"), gross - profit - entry_share).quantize(PRICE_STEP)


def _fill_key(bot_trade: BotTrade, closed_at: datetime) -> str:
    """One key per exit fill of the bot's trade: the webhook and the trade record agree
    on the fill time to the millisecond, so each fill applies once whoever reports it."""
    millis = int(closed_at.timestamp() * 1000)
    return f"bot:{bot_trade.connection_id}:{bot_trade.trade_id}:exit:{millis}"


def bot_trade_apply_exit(bot_trade: BotTrade, *, quantity: Decimal, price: Decimal,
                         closed_at: datetime, bot_reason: str, profit: Decimal,
                         final: bool) -> tuple[Trade | None, str]:
    """Apply one exit fill the bot reported; ``(trade if the position closed, note)``.

    A final exit closes the position (moving it to CLOSING first when the bot exited
    on its own) and settles any close action of the platform's waiting for it; a
    partial one reduces the quantity, whatever the state. Applying the same fill
    again (a retried webhook, the sync after the webhook) changes nothing.
    """
    connection = bot_trade.connection
    actor = bot_actor(connection)
    with transaction.atomic():
        position = Position.objects.select_for_update().select_related("strategy").get(
            pk=bot_trade.position_id)
        if position.state == S.CLOSED:
            return getattr(position, "trade", None), "already closed"
        quantity = position.quantity if final else min(bot_quantity(quantity), position.quantity)
        price = bot_price(price)
        asked = position.close_reason if position.state == S.CLOSING else ""
        reason = platform_exit_reason(bot_reason, asked)
        closes = quantity >= position.quantity
        if closes and position.state != S.CLOSING:
            position_begin_close(position, reason=reason, actor=actor)
        trade = position_apply_close_fill(
            position, fill_key=_fill_key(bot_trade, closed_at), quantity=quantity, price=price,
            fee=exit_fee(position, quantity=quantity, price=price, profit=profit),
            filled_at=closed_at, actor=actor, exit_reason=reason,
            partial_while_held=not closes)
        if trade is not None:
            close_actions_settle(position, result={"closed_by": actor, "exit_reason": bot_reason})
            return trade, f"closed ({bot_reason} → {trade.exit_reason})"
    return None, f"reduced by {format(quantity.normalize(), 'f')} ({bot_reason})"


def bot_trade_close_from_record(bot_trade: BotTrade, record: dict[str, Any]
                                ) -> tuple[Trade | None, str]:
    """Close the position of a trade the bot closed, from the bot's trade record.

    The remaining quantity exits at the record's close rate and time, and the PnL
    comes out as the bot's ``close_profit_abs`` for the whole trade.
    """
    if record.get("is_open") is not False:
        return None, "the bot still holds the trade"
    position = Position.objects.get(pk=bot_trade.position_id)
    if position.state == S.CLOSED:
        return getattr(position, "trade", None), "already closed"
    closed_at = datetime.fromtimestamp(int(record["close_timestamp"]) / 1000, UTC)
    total = bot_price(record.get("close_profit_abs") or 0)
    return bot_trade_apply_exit(
        bot_trade, quantity=position.quantity, price=bot_price(record["close_rate"]),
        closed_at=closed_at, bot_reason=str(record.get("exit_reason") or ""),
        profit=total - _realised_so_far(position), final=True)
