"""Fills and final states: the exchange's answer applied to the order (and, through
execution's hooks, to its position)."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from execution import handlers
from execution.alerts import (
    FILL_UNAPPLIED_ALERT,
    raise_order_alert,
)
from execution.exchanges.base import (
    CANCELED,
    CLOSED,
    EXPIRED,
    REJECTED,
    OrderSnapshot,
)
from execution.models import Order, OrderPurpose, OrderType
from execution.pipeline.writes import (
    FINAL_FIELDS,
    PRICE_PLACES,
    Next,
    OrderMoved,
    S,
    order_config,
    order_save,
    plain,
    poll_delay,
    recoverable_write,
)
from execution.slippage import signed_slippage_percent
from tradingsite.errors import DomainError
from tradingsite.live import broadcast
from tradingsite.live_config import OrderExecutionConfig
from tradingsite.sql import update_row

log = logging.getLogger(__name__)



def status_from(snapshot: OrderSnapshot, order: Order) -> str:
    if snapshot.status == CLOSED:
        # Bybit's PartiallyFilledCanceled is 'closed' in ccxt: trust the quantities.
        return S.FILLED if order.filled_quantity >= order.quantity else S.CANCELLED
    if snapshot.status == CANCELED:
        return S.CANCELLED
    if snapshot.status == REJECTED:
        return S.REJECTED
    if snapshot.status == EXPIRED:
        return S.EXPIRED
    if order.status == S.CANCELLING:
        return S.CANCELLING
    return S.PARTIALLY_FILLED if order.filled_quantity > 0 else S.OPEN


def snapshot_apply(order: Order, snapshot: OrderSnapshot, cfg: OrderExecutionConfig,
                    now: datetime, *, extra: tuple[str, ...] = ()) -> Next:
    """Record fills and status from the exchange; finalise when the order is over.

    The exchange answered: the order is no longer in doubt. An exit order's fill moves
    its position in the same transaction as the order's own write; other orders need a
    single write, which commits on its own.
    """
    moves_position = order.purpose != OrderPurpose.ENTRY and order.position_id is not None
    order.in_doubt_since, order.doubt_lookups, order.next_attempt_at = None, 0, None
    with recoverable_write() if moves_position else nullcontext():
        fill_record(order, snapshot, now)
        order.status = status_from(snapshot, order)
        if order.is_final:
            if order.status == S.REJECTED and not order.last_error:
                order.last_error = "rejected by the exchange"
            return order_finalize(order, now)
        order_save(order, "status", "filled_quantity", "average_fill_price", "fee", "fee_currency",
              "slippage_percent", "last_error", *extra)
    return Next(order, poll_delay(order, cfg, now), "open")


def fill_record(order: Order, snapshot: OrderSnapshot, now: datetime) -> None:
    """Take the exchange's cumulative fill; a close order's new fill goes to its position.

    A fill the position cannot take (it is no longer closing, or holds less) stays on
    the order: the position is marked for reconciliation and a CRITICAL
    ``fill_unapplied`` alert raised, so the timeout pass reconciles it with the
    exchange instead of sending more closes.
    """
    filled = min(snapshot.filled, order.quantity)
    if filled <= order.filled_quantity:
        return
    delta = filled - order.filled_quantity
    average = snapshot.average or snapshot.price or order.price or order.expected_price
    if average is None:
        log.error("order %s: fill of %s without a price", order.client_order_id, delta)
        return
    old_value = order.filled_quantity * (order.average_fill_price or Decimal("0"))
    delta_price = (filled * average - old_value) / delta
    if delta_price <= 0:
        delta_price = average
    delta_fee = max(snapshot.fee - order.fee, Decimal("0"))
    order.filled_quantity = filled
    order.average_fill_price = average.quantize(PRICE_PLACES)
    order.fee = max(snapshot.fee, order.fee)
    order.fee_currency = snapshot.fee_currency or order.fee_currency
    if order.expected_price:
        order.slippage_percent = signed_slippage_percent(order.side, order.expected_price,
                                                         average)
    if order.purpose != OrderPurpose.ENTRY and order.position_id:
        try:
            handlers.exit_filled(order, handlers.ExitFill(
                fill_key=f"{order.client_order_id}:{filled.normalize()}", quantity=delta,
                price=delta_price.quantize(PRICE_PLACES), fee=delta_fee, filled_at=now))
        except (DomainError, ValueError) as exc:  # the position moved on without this order
            log.error("order %s: exit fill not applied to position %s: %s",
                      order.client_order_id, order.position_id, exc)
            why = f"exit fill of {plain(delta)} not applied to the position: {exc}"
            order.last_error = why
            handlers.fill_unapplied(order, reason=f"{order.client_order_id}: {why}")
            raise_order_alert(order, kind=FILL_UNAPPLIED_ALERT, message=(
                f"{why}; the fill stays on the order and the position is reconciled with the "
                "exchange before anything else is sent for it"))


def order_finalize(order: Order, now: datetime) -> Next:
    """Write the final state; an entry fill opens its position in the same transaction.

    A compare-and-set like every write (``OrderMoved`` if another writer got there
    first: nothing of this step is kept). An order that ends without its full fill
    (refused, failed, cancelled, timed out) is pushed live: that is what the operator
    must see. Fills show up as position events.
    """
    order.finalized_at = now
    if order.status == S.FILLED:
        order.filled_at = order.filled_at or now
    order.lease_holder, order.lease_until, order.next_attempt_at = "", None, None
    opens_position = (order.purpose == OrderPurpose.ENTRY and order.filled_quantity > 0
                      and order.strategy_id and not order.position_id)
    with recoverable_write() if opens_position else nullcontext():
        fields = FINAL_FIELDS
        if opens_position:
            order.position = handlers.entry_filled(order, opened_at=order.filled_at or now)
            fields = [*FINAL_FIELDS, "position"]
        read = order.version
        order.version = read + 1
        if not update_row(order, fields, expect={"version": read}, async_commit=True):
            order.version = read
            raise OrderMoved(f"order {order.client_order_id} was moved by another worker")
        if order.status != S.FILLED:
            broadcast("order.unfilled", order_payload(order))
    return Next(order, None, "final")


def order_payload(order: Order) -> dict[str, Any]:
    """What the live layer and the API say about an order."""
    return {"id": order.pk, "client_order_id": order.client_order_id, "account": order.account_id,
            "symbol": order.symbol, "side": order.side, "purpose": order.purpose,
            "status": order.status, "quantity": order.quantity,
            "filled_quantity": order.filled_quantity,
            "average_fill_price": order.average_fill_price,
            "slippage_percent": order.slippage_percent, "attempts": order.attempts,
            "retries": order.retries, "timed_out": order.timed_out,
            "last_error": order.last_error, "position": order.position_id}


def order_sync(order: Order, snapshot: OrderSnapshot) -> Next:
    """Bring ``order`` in line with what the exchange says about it now.

    The reconciliation on start calls this with the order found by its client order
    id: an answer lost in a crash is recovered here, and fills go through the same
    keyed path as live updates, so nothing is applied twice. A market order the
    exchange reports filled filled on arrival: its fill (and the position it opens
    or closes) is dated at the exchange's order time, not at the restart, so the
    holding-time limits count from the real fill. ``OrderMoved`` if another writer
    moved the order since it was read.
    """
    now = timezone.now()
    extra: tuple[str, ...] = ()
    if not order.exchange_order_id:
        order.exchange_order_id, order.acknowledged_at = snapshot.id, order.acknowledged_at or now
        extra = ("exchange_order_id", "acknowledged_at")
    when = now
    if (order.order_type == OrderType.MARKET and snapshot.is_final and snapshot.filled > 0
            and snapshot.timestamp is not None and snapshot.timestamp < now):
        when = snapshot.timestamp
    return snapshot_apply(order, snapshot, order_config(order), when, extra=extra)
