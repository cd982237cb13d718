"""The step: what one run of an order does next (attempt, poll, lookup, cancel), and
when to come back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from execution.exchanges import exchange_for
from execution.exchanges.base import (
    Exchange,
)
from execution.exchanges.errors import (
    ExchangeError,
    OrderNotFound,
    TransientError,
)
from execution.models import Order
from execution.pipeline.cancel import cancel_and_verify, order_expire
from execution.pipeline.doubt import look_up_in_doubt, verify_in_doubt
from execution.pipeline.fills import snapshot_apply
from execution.pipeline.placement import attempt, order_refuse
from execution.pipeline.writes import (
    UNACKNOWLEDGED,
    Next,
    OrderMoved,
    S,
    order_config,
    order_deadline,
    order_held,
    order_save,
    poll_delay,
)
from tradingsite.live_config import OrderExecutionConfig

log = logging.getLogger(__name__)



def order_step(order: Order, *, exchange: Exchange | None = None) -> Next:
    """Advance ``order`` by one step and say when to come back.

    A step whose write finds the order moved by another writer ends here: that
    writer (and whoever it scheduled) carries the order on.
    """
    if order.is_final:
        return Next(order, None, "final")
    now = timezone.now()
    if order_held(order, now):
        return Next(order, _lease_left(order, now), "attempt in flight elsewhere")
    try:
        exchange = exchange or exchange_for(order.account)
    except ExchangeError as exc:  # e.g. an unknown ccxt exchange id on the account
        if order.status == S.CREATED and order.attempts == 0:
            return _moved_aside(order, order_refuse, order, exc, now)  # never sent
        raise
    return _moved_aside(order, _step, order, exchange, order_config(order), now)


def _moved_aside(order: Order, step: Callable[..., Next], *args: Any) -> Next:
    """Run ``step``; if another writer moved the order meanwhile, stop with its state."""
    try:
        return step(*args)
    except OrderMoved:
        order.refresh_from_db()
        return Next(order, None, "moved by another worker")


def _step(order: Order, exchange: Exchange, cfg: OrderExecutionConfig, now: datetime) -> Next:
    if order.status == S.CANCELLING:
        return cancel_and_verify(order, exchange, cfg, now)
    if now >= order_deadline(order, cfg):
        return order_expire(order, exchange=exchange)
    if order.next_attempt_at and now < order.next_attempt_at:
        return Next(order, (order.next_attempt_at - now).total_seconds(), "retry scheduled")
    if order.status == S.UNKNOWN and _sending_over(order):
        return verify_in_doubt(order, exchange, cfg, now)
    if order.status in UNACKNOWLEDGED:
        return attempt(order, exchange, cfg, now)
    return _poll(order, exchange, cfg, now)


def _lease_left(order: Order, now: datetime) -> float:
    return max((order.lease_until - now).total_seconds(), 0.0)


def _sending_over(order: Order) -> bool:
    """Every scheduled attempt was made (a retry is scheduled by counting it in ``retries``
    before it is claimed, which counts it in ``attempts``): only lookups are left."""
    return order.attempts > order.retries


def _poll(order: Order, exchange: Exchange, cfg: OrderExecutionConfig, now: datetime) -> Next:
    try:
        snapshot = exchange.fetch_order(order.exchange_order_id, order.symbol)
    except OrderNotFound:  # no longer listed by id: in doubt until the exchange says more
        try:
            found = look_up_in_doubt(order, exchange, now, by_id=False)
        except TransientError as exc:
            return _poll_failed(order, exc, cfg, now)
        if isinstance(found, Next):
            return found
        snapshot = found
    except TransientError as exc:
        return _poll_failed(order, exc, cfg, now)
    return snapshot_apply(order, snapshot, cfg, now)


def _poll_failed(order: Order, exc: ExchangeError, cfg: OrderExecutionConfig,
                 now: datetime) -> Next:
    order.last_error = f"status poll: {exc}"
    order_save(order, "last_error")
    return Next(order, poll_delay(order, cfg, now), "poll failed")
