"""Keep realised-PnL checkpoints true when trades change, and tell the dashboards
(connected in ``apps.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lifecycle.models import Trade
from tradingsite.live import broadcast

# Fields that decide which checkpoint a trade's PnL belongs to, and how much.
_CHECKPOINT_FIELDS = {"pnl", "closed_at", "strategy", "strategy_id", "symbol", "exit_reason"}


def trade_saved(sender: type[Trade], instance: Trade, created: bool, using: str,
                update_fields: Iterable[str] | None = None, **kwargs: Any) -> None:
    from analytics.selectors import forget_checkpoints_after

    if created:
        forget_checkpoints_after(instance.closed_at, using)
        broadcast("trade.closed", trade_event(instance))
    elif update_fields is None or _CHECKPOINT_FIELDS & set(update_fields):
        # An edited trade may have moved: its old close time is unknown here.
        forget_checkpoints_after(None, using)


def trade_deleted(sender: type[Trade], instance: Trade, using: str, **kwargs: Any) -> None:
    from analytics.selectors import forget_checkpoints_after

    forget_checkpoints_after(instance.closed_at, using)


def trade_event(trade: Trade) -> dict[str, Any]:
    """The ``trade.closed`` payload: what a dashboard needs to know its reports moved."""
    return {"id": trade.pk, "position": trade.position_id, "strategy": trade.strategy.name,
            "symbol": trade.symbol, "side": trade.side, "pnl": trade.pnl,
            "pnl_percent": trade.pnl_percent, "exit_price": trade.exit_price,
            "exit_reason": trade.exit_reason, "closed_at": trade.closed_at}
