"""Orders in doubt: lookups by client order id until the exchange answers, absence
proven only after enough misses over enough time, and orders that come back."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from execution.alerts import (
    ORDER_REAPPEARED_ALERT,
    ORDER_UNKNOWN_ALERT,
    raise_order_alert,
)
from execution.exchanges.base import (
    Exchange,
    OrderSnapshot,
)
from execution.exchanges.errors import (
    OrderNotFound,
    TransientError,
)
from execution.models import Order, OrderPurpose
from execution.pipeline.fills import snapshot_apply
from execution.pipeline.placement import acknowledged
from execution.pipeline.replace import after_cancel
from execution.pipeline.writes import ABSENT, Next, S, lookup_schedule, order_config, plain
from tradingsite.live_config import OrderExecutionConfig

log = logging.getLogger(__name__)



def order_locate(order: Order, exchange: Exchange, *, by_id: bool = True
                 ) -> OrderSnapshot | None:
    """The exchange's view of ``order``: by exchange id, else by client order id (open and
    history); ``None`` when neither finds it. ``TransientError``: no answer."""
    if by_id and order.exchange_order_id:
        try:
            return exchange.fetch_order(order.exchange_order_id, order.symbol)
        except OrderNotFound:
            pass  # out of the recent orders: search by client order id
    return exchange.find_order(order.client_order_id, order.symbol)


def proven_absent(order: Order, cfg: OrderExecutionConfig, now: datetime) -> bool:
    """Enough lookups missed, spread over enough time, for "not found" to be definitive."""
    return (order.in_doubt_since is not None and order.doubt_lookups >= cfg.in_doubt_lookups
            and now - order.in_doubt_since >= timedelta(seconds=cfg.in_doubt_grace_seconds))


def order_not_found(order: Order, *, now: datetime | None = None, note: str = "") -> Next:
    """A targeted lookup did not find ``order``: count the miss; end it once proven absent.

    An order never sent (no attempt, no exchange id) is absent at once. Otherwise the
    miss is counted and the order stays in doubt, looked up again in
    ``inDoubtGraceSeconds / inDoubtLookups`` s, until ``proven_absent``. ``note`` says
    who found it missing (kept on the order when it ends).
    """
    now = now or timezone.now()
    cfg = order_config(order)
    if order.attempts == 0 and not order.exchange_order_id:
        return _end_absent(order, cfg, now, note=note)
    order.in_doubt_since = order.in_doubt_since or now
    order.doubt_lookups += 1
    if proven_absent(order, cfg, now):
        return _end_absent(order, cfg, now, note=note)
    return lookup_schedule(order, cfg, now, "in doubt: not found yet")


def look_up_in_doubt(order: Order, exchange: Exchange, now: datetime, *, by_id: bool = True
                      ) -> OrderSnapshot | Next:
    """The snapshot of an order the exchange may not have, or the step that follows a miss."""
    snapshot = order_locate(order, exchange, by_id=by_id)
    if snapshot is None:
        return order_not_found(order, now=now)
    return snapshot


def verify_in_doubt(order: Order, exchange: Exchange, cfg: OrderExecutionConfig,
                     now: datetime) -> Next:
    """The sends are over and their outcome unknown: one lookup by client order id."""
    try:
        found = look_up_in_doubt(order, exchange, now)
    except TransientError as exc:
        log.warning("order %s: lookup in doubt failed (%s)", order.client_order_id, exc)
        return lookup_schedule(order, cfg, now, "in doubt: lookup failed")
    if isinstance(found, Next):
        return found
    return acknowledged(order, found, exchange, cfg)


def _end_absent(order: Order, cfg: OrderExecutionConfig, now: datetime, *, note: str = ""
                ) -> Next:
    """The exchange does not have ``order``: it ends with what was filled so far.

    Never sent: expired at its timeout, cancelled on request, failed otherwise. Sent and
    proven absent: FAILED if never acknowledged (the request never arrived), EXPIRED if
    acknowledged before (the exchange no longer knows it); an ``order_unknown`` alert
    says so. A timed-out emergency close is then replaced (``after_cancel``).
    """
    never_sent = order.attempts == 0 and not order.exchange_order_id
    if never_sent:
        cancelling = order.status == S.CANCELLING
        order.status = (S.EXPIRED if order.timed_out else S.CANCELLED) if cancelling else S.FAILED
        why = "the exchange never had it"
    else:
        order.status = S.EXPIRED if order.exchange_order_id else S.FAILED
        order.error_code = ABSENT
        why = (f"not found by client order id in {order.doubt_lookups} lookups over "
               f"{cfg.in_doubt_grace_seconds:g} s")
    why = f"{note}: {why}" if note else why
    order.last_error = f"{order.last_error}; {why}" if order.last_error else why
    step = after_cancel(order, cfg, now)
    if not never_sent:
        raise_order_alert(order, kind=ORDER_UNKNOWN_ALERT, critical=order.purpose
                          != OrderPurpose.ENTRY, message=f"proven absent from the exchange "
                                                         f"({why}): marked {order.status}")
    return step


def order_take_back(order: Order, snapshot: OrderSnapshot) -> Next:
    """An order declared absent shows up on the exchange: take it back.

    Its fills are applied once (keyed, as always), its state follows the exchange (an
    order still open is tracked and cancelled at its timeout like any other), and an
    ``order_reappeared`` alert is raised. Compare-and-set like every write.
    """
    now = timezone.now()
    before = order.status
    order.status, order.finalized_at = S.OPEN, None
    order.exchange_order_id = order.exchange_order_id or snapshot.id
    order.acknowledged_at = order.acknowledged_at or now
    order.error_code = "reappeared"
    note = f"reappeared on the exchange after being marked {before}: taken back"
    order.last_error = f"{order.last_error}; {note}" if order.last_error else note
    step = snapshot_apply(order, snapshot, order_config(order), now, extra=(
        "exchange_order_id", "acknowledged_at", "error_code", "finalized_at"))
    raise_order_alert(order, kind=ORDER_REAPPEARED_ALERT,
                      message=f"{note}; now {order.status}, filled "
                              f"{plain(order.filled_quantity)} of {plain(order.quantity)}")
    return step
