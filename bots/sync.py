"""The sync: every ``bots.botSyncSeconds`` the bot's state and open trades are read.

A trade whose entry webhook was lost is adopted (the position a late webhook then
finds); a position whose trade the bot no longer holds is closed from the bot's trade
record. Runs as ``bots.tasks.sync_bot`` (one per due connection) or from the admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from bots import alerts, freqtrade
from bots.freqtrade import BotApiError
from bots.models import BotConnection, BotState, BotTrade
from bots.services import (
    bot_price,
    bot_quantity,
    bot_state_from_status,
    bot_state_record,
    bot_trade_adopt,
    bot_trade_close_from_record,
    bots_config,
)
from lifecycle.models import PositionSide, PositionState
from tradingsite.errors import RequestMismatch

S = PositionState


@dataclass
class SyncResult:
    """What one sync of a connection found and did."""

    connection: str
    bot_state: str = ""
    open_trades: int = 0
    adopted: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _record_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The hand-over fields of an open trade in ``/api/v1/status``.

    Its ``amount`` is what the bot still holds (partial exits reduce it), so it is the
    amount handed over only for a trade never seen before; a known trade is compared
    by pair, side, price and opening time.
    """
    return {"trade_id": int(record["trade_id"]), "pair": str(record["pair"]),
            "side": PositionSide.SHORT if record.get("is_short") else PositionSide.LONG,
            "amount": None, "fallback_amount": bot_quantity(record["amount"]),
            "open_rate": bot_price(record["open_rate"]),
            "opened_at": datetime.fromtimestamp(int(record["open_timestamp"]) / 1000, UTC)}


def bot_connection_sync(connection: BotConnection) -> SyncResult:
    """Read the bot's open trades: adopt those whose webhook was lost, close the positions
    of trades the bot no longer holds from its trade records.

    An unreachable bot is recorded (state ``unreachable``, alert); nothing else changes.
    """
    result = SyncResult(connection.name)
    now = timezone.now()
    BotConnection.objects.filter(pk=connection.pk).update(last_sync_attempt_at=now)
    try:
        api = freqtrade.bot_api_for(connection)
        result.bot_state = bot_state_from_status(api.state()) or connection.bot_state
        bot_state_record(connection, result.bot_state)
        records = api.open_trades()
    except BotApiError as exc:
        BotConnection.objects.filter(pk=connection.pk).update(last_sync_error=str(exc)[:500])
        if exc.unreachable:
            bot_state_record(connection, BotState.UNREACHABLE, detail=str(exc))
        result.errors.append(str(exc))
        return result
    result.open_trades = len(records)
    held: set[int] = set()
    for record in records:
        try:
            fields = _record_fields(record)
            held.add(fields["trade_id"])
            _, created = bot_trade_adopt(connection, adopted_by=BotTrade.AdoptedBy.SYNC, **fields)
        except RequestMismatch as exc:
            alerts.raise_trade_conflict_alert(connection, detail=str(exc))
            result.errors.append(str(exc))
            continue
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            result.errors.append(f"trade record {record.get('trade_id')!r}: unreadable ({exc})")
            continue
        if created:
            result.adopted.append(fields["trade_id"])
    gone = BotTrade.objects.select_related("connection").filter(
        connection=connection, position__state__in=S.active()).exclude(
        Q(trade_id__in=held))
    for bot_trade in gone:
        _close_if_gone(api, bot_trade, result)
    BotConnection.objects.filter(pk=connection.pk).update(
        last_sync_at=now, last_sync_error="; ".join(result.errors)[:500])
    return result


def _close_if_gone(api: Any, bot_trade: BotTrade, result: SyncResult) -> None:
    try:
        record = api.trade(bot_trade.trade_id)
    except BotApiError as exc:
        if exc.not_found:
            alerts.raise_trade_missing_alert(bot_trade.position, connection=bot_trade.connection,
                                             trade_id=bot_trade.trade_id)
            result.missing.append(bot_trade.trade_id)
        else:
            result.errors.append(str(exc))
        return
    try:
        trade, _ = bot_trade_close_from_record(bot_trade, record)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        result.errors.append(f"trade record {bot_trade.trade_id}: unreadable ({exc})")
        return
    if trade is not None:
        result.closed.append(bot_trade.trade_id)


def bot_connections_due_for_sync(now: datetime | None = None) -> list[int]:
    """Enabled connections whose last sync began ``bots.botSyncSeconds`` ago or more.

    Each is claimed (its attempt time set, compare-and-set) so that overlapping beats
    send one sync, not two.
    """
    now = now or timezone.now()
    due = []
    for connection in BotConnection.objects.filter(enabled=True).select_related("strategy"):
        every = bots_config(connection).bot_sync_seconds
        last = connection.last_sync_attempt_at
        if last is not None and (now - last).total_seconds() < every:
            continue
        claimed = BotConnection.objects.filter(pk=connection.pk,
                                               last_sync_attempt_at=last).update(
            last_sync_attempt_at=now)
        if claimed:
            due.append(connection.pk)
    return due
