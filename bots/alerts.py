"""Alerts about bots, raised through the platform's one alert mechanism (``risk.services``).

- ``bot_down:<connection>`` (no position): the bot stopped or its process died
  (CRITICAL), or its REST API could not be reached by the sync (WARNING); resolved
  when it is heard running again;
- ``bot_close_unconfirmed`` (on the position): a close the platform asked the bot for
  was not confirmed within ``bots.botCloseTimeoutSeconds`` (CRITICAL);
- ``bot_trade_missing`` (on the position): the bot has no record of the trade the
  position was handed over from (CRITICAL);
- ``bot_trade_conflict:<connection>`` (no position): the bot reported a trade that
  contradicts what it reported before (same trade id, other pair, side, amount or
  price: a reset bot database or a position adjustment), refused with a 409 (WARNING).
"""

from __future__ import annotations

from typing import Any

from risk.models import AlertSeverity, RiskAlert
from risk.services import alert_raise, alerts_resolve

BOT_DOWN_ALERT = "bot_down"
BOT_CLOSE_UNCONFIRMED_ALERT = "bot_close_unconfirmed"
BOT_TRADE_MISSING_ALERT = "bot_trade_missing"
BOT_TRADE_CONFLICT_ALERT = "bot_trade_conflict"


def _connection_kind(kind: str, connection: Any) -> str:
    return f"{kind}:{connection.name}"[:64]


def raise_bot_down_alert(connection: Any, *, message: str, critical: bool) -> RiskAlert:
    return alert_raise(kind=_connection_kind(BOT_DOWN_ALERT, connection),
                       severity=AlertSeverity.CRITICAL if critical else AlertSeverity.WARNING,
                       message=f"Bot {connection.name}: {message}")


def resolve_bot_down_alert(connection: Any) -> int:
    return alerts_resolve(list(RiskAlert.objects.filter(
        position=None, kind=_connection_kind(BOT_DOWN_ALERT, connection),
        resolved_at__isnull=True)))


def raise_close_unconfirmed_alert(position: Any, *, connection: Any, seconds: float,
                                  detail: str) -> RiskAlert:
    return alert_raise(
        position=position, kind=BOT_CLOSE_UNCONFIRMED_ALERT, severity=AlertSeverity.CRITICAL,
        message=f"Bot {connection.name} did not confirm the close of {position.symbol} within "
                f"{seconds:g} s: {detail}")


def raise_trade_missing_alert(position: Any, *, connection: Any, trade_id: int) -> RiskAlert:
    return alert_raise(
        position=position, kind=BOT_TRADE_MISSING_ALERT, severity=AlertSeverity.CRITICAL,
        message=f"Bot {connection.name} has no trade {trade_id}: the position it handed over "
                "cannot be closed through it (close it by hand, or enable "
                "bots.fallbackDirectClose)")


def raise_trade_conflict_alert(connection: Any, *, detail: str) -> RiskAlert:
    return alert_raise(kind=_connection_kind(BOT_TRADE_CONFLICT_ALERT, connection),
                       severity=AlertSeverity.WARNING,
                       message=f"Bot {connection.name} reported a conflicting trade: {detail}")
