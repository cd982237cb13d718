"""Replacement of a timed-out emergency close: finalised and replaced at market together."""

from __future__ import annotations

import logging
from datetime import datetime

from execution import handlers
from execution.models import Order, OrderPurpose, OrderType
from execution.pipeline.fills import order_finalize
from execution.pipeline.placement import order_submit
from execution.pipeline.writes import Next, S, recoverable_write
from tradingsite.live_config import OrderExecutionConfig

log = logging.getLogger(__name__)



def after_cancel(order: Order, cfg: OrderExecutionConfig, now: datetime) -> Next:
    """Finalise; a timed-out emergency close with quantity left is replaced at market.

    Only once the order is final or proven absent (this runs then), and only when no
    other order of the position is still active (one may be in doubt): the order's end
    and its replacement commit together.
    """
    replace = (order.purpose == OrderPurpose.EMERGENCY_CLOSE and order.timed_out
               and order.remaining_quantity > 0 and order.position_id
               and _replacement_number(order) <= cfg.max_retries)
    left = handlers.replacement_quantity(order) if replace else None
    if left is None:
        return order_finalize(order, now)
    with recoverable_write():
        order_finalize(order, now)
        busy = Order.objects.filter(position_id=order.position_id, status__in=S.active()).exclude(
            pk=order.pk).values_list("client_order_id", flat=True).first()
        if busy:
            log.warning("emergency close %s timed out; not replaced: order %s of the position "
                        "is still active", order.client_order_id, busy)
            return Next(order, None, "final")
        replacement = order_submit(
            account=order.account, symbol=order.symbol, side=order.side,
            quantity=min(order.remaining_quantity, left),
            order_type=OrderType.MARKET, purpose=OrderPurpose.EMERGENCY_CLOSE,
            reduce_only=handlers.close_reduce_only(order), strategy=order.strategy,
            position=order.position,
            action=order.action,
            replaces=order,
            client_order_id=f"{_root(order).client_order_id}-r{_replacement_number(order)}")
    log.warning("emergency close %s timed out with %s left: replaced by market order %s",
                order.client_order_id, order.remaining_quantity, replacement.client_order_id)
    return Next(replacement, 0.0, "replacement")


def _root(order: Order) -> Order:
    while order.replaces_id:
        order = order.replaces
    return order


def _replacement_number(order: Order) -> int:
    """1 for the first replacement of the original order, 2 for the next, …"""
    depth, current = 1, order
    while current.replaces_id:
        depth, current = depth + 1, current.replaces
    return depth
