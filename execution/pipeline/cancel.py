"""Timeout and cancel: an order past ``orderTimeoutSeconds`` or asked to stop is
cancelled on the exchange and read back; the exchange decides the outcome."""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from execution.exchanges import exchange_for
from execution.exchanges.base import (
    Exchange,
)
from execution.exchanges.errors import (
    OrderNotFound,
    RejectedError,
    TransientError,
)
from execution.models import Order
from execution.pipeline.doubt import look_up_in_doubt
from execution.pipeline.fills import fill_record, status_from
from execution.pipeline.replace import after_cancel
from execution.pipeline.writes import Next, OrderMoved, S, order_config, order_save, recoverable_write
from tradingsite.live_config import OrderExecutionConfig

log = logging.getLogger(__name__)



def order_expire(order: Order, *, exchange: Exchange | None = None) -> Next:
    """The order is not final after ``orderTimeoutSeconds``: cancel it, verify, replace.

    An order in doubt is marked timed out and keeps being looked up: it is cancelled
    when found, and ends only when the exchange says so or it is proven absent.
    """
    exchange = exchange or exchange_for(order.account)
    cfg = order_config(order)
    timed_out = f"not final after {cfg.order_timeout_seconds:g} s"
    order.last_error = (f"{order.last_error}; {timed_out}" if order.in_doubt
                        else f"{timed_out}: cancelled")
    order.status, order.timed_out = S.CANCELLING, True
    order_save(order, "status", "timed_out", "last_error")
    return cancel_and_verify(order, exchange, cfg, timezone.now())


def order_begin_cancel(order: Order, *, reason: str) -> bool:
    """Mark an active order for cancelling (compare-and-set); False if it is final.

    A placement attempt in flight keeps its lease: the cancel goes out once it ends.
    """
    for _ in range(5):
        if order.is_final:
            return False
        if order.status == S.CANCELLING:
            return True
        order.status, order.last_error = S.CANCELLING, reason
        try:
            order_save(order, "status", "last_error", keep_lease=True)
            return True
        except OrderMoved:
            order.refresh_from_db()
    return order.status == S.CANCELLING


def cancel_and_verify(order: Order, exchange: Exchange, cfg: OrderExecutionConfig,
                       now: datetime) -> Next:
    """Cancel on the exchange, then read the order back: the exchange decides the outcome.

    A fill that happened during the cancel is applied; a partial fill is kept. An
    order without an exchange id is first looked up by client order id: while it is
    in doubt it is looked up again (paced), and it ends without the exchange only once
    proven absent. Until the exchange reports a final state the order stays CANCELLING
    and this runs again after the poll interval.
    """
    retry = Next(order, cfg.status_poll_interval_ms / 1000, "cancel pending")
    if order.next_attempt_at and now < order.next_attempt_at:  # a paced lookup in doubt
        return Next(order, (order.next_attempt_at - now).total_seconds(), "lookup scheduled")
    try:
        if not order.exchange_order_id:
            found = look_up_in_doubt(order, exchange, now)
            if isinstance(found, Next):
                return found
            order.exchange_order_id = found.id
            order.acknowledged_at = order.acknowledged_at or now
        try:
            exchange.cancel_order(order.exchange_order_id, order.symbol)
        except (OrderNotFound, TransientError):
            pass  # already final, or unknown: the read-back below decides
        except RejectedError as exc:
            order.last_error = f"{order.last_error}; cancel refused: {exc}"
        try:
            snapshot = exchange.fetch_order(order.exchange_order_id, order.symbol)
        except OrderNotFound:  # out of the exchange's recent orders: search its history
            found = look_up_in_doubt(order, exchange, now, by_id=False)
            if isinstance(found, Next):
                return found
            snapshot = found
    except TransientError as exc:
        log.warning("order %s: cancel/verify incomplete (%s)", order.client_order_id, exc)
        return retry
    order.in_doubt_since, order.doubt_lookups, order.next_attempt_at = None, 0, None
    with recoverable_write():
        fill_record(order, snapshot, now)
        order.status = status_from(snapshot, order)
        if not order.is_final:
            order_save(order, "status", "filled_quantity", "average_fill_price", "fee",
                  "fee_currency", "slippage_percent", "last_error", "exchange_order_id",
                  "acknowledged_at")
            return retry
        return after_cancel(order, cfg, now)
