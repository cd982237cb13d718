"""The order row: what a step returns, and the compare-and-set writes every step makes."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import connection, transaction

from execution import handlers
from execution.models import Order, OrderStatus
from tradingsite.errors import ConflictError
from tradingsite.live_config import OrderExecutionConfig
from tradingsite.sql import ASYNC_COMMIT, update_row

log = logging.getLogger(__name__)

S = OrderStatus
PRICE_PLACES = Decimal("1e-10")
UNACKNOWLEDGED = (S.CREATED, S.SUBMITTING, S.UNKNOWN)
LIVE_ON_EXCHANGE = (S.OPEN, S.PARTIALLY_FILLED)
BOOK_DEPTH = 25
ABSENT = "unknown_to_exchange"  # error code of an order proven absent from the exchange
# Written with every step's write: the claim (version), the lease (released), the doubt.
STEP_FIELDS = ("version", "lease_holder", "lease_until", "in_doubt_since", "doubt_lookups",
               "next_attempt_at", "updated_at")
# Everything a step may change; the final write sends these and nothing else.
FINAL_FIELDS = ["status", "quantity", "price", "expected_price", "exchange_order_id",
                "filled_quantity", "average_fill_price", "fee", "fee_currency",
                "slippage_percent", "estimated_slippage_percent", "attempts", "retries",
                "timed_out", "latency_ms", "last_error", "error_code", "submitted_at",
                "acknowledged_at", "filled_at", "finalized_at", *STEP_FIELDS]
# What _prepare decides before the first send (rounded quantity and price, the
# reference price, the slippage estimate): written with the attempt's claim.
PREPARED_FIELDS = ("quantity", "price", "expected_price", "estimated_slippage_percent",
                   "reduce_only")
CLAIM_FIELDS = ("status", "attempts", "submitted_at", *STEP_FIELDS, *PREPARED_FIELDS)


class OrderMoved(ConflictError):
    """Another writer moved the order since this step read it: the step's write is dropped."""

    code = "order_moved"


@dataclass(frozen=True)
class Next:
    """What to do after a step: stop (``delay is None``) or step ``order`` again after ``delay`` s."""

    order: Order
    delay: float | None
    why: str = ""

    @property
    def done(self) -> bool:
        return self.delay is None


def order_config(order: Order) -> OrderExecutionConfig:
    """The ``orderExecution`` config of the order's strategy (site config without one)."""
    return handlers.order_config(order)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros, for messages: 0.0004, 50000."""
    return f"{Decimal(value).normalize():f}"


def new_client_order_id(prefix: str = "o") -> str:
    """A fresh client order id; at most 36 characters (Bybit's orderLinkId limit)."""
    return f"{prefix}-{uuid.uuid4().hex[:32 - len(prefix)]}"


def lease_holder() -> str:
    """Who holds a lease taken in this process (shown to the operator)."""
    return _holder(os.getpid())


@cache
def _holder(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def order_deadline(order: Order, cfg: OrderExecutionConfig) -> datetime:
    return order.created_at + timedelta(seconds=cfg.order_timeout_seconds)


def in_flight_window() -> timedelta:
    """How long a claimed attempt may be waiting on the exchange (request timeout + margin)."""
    return timedelta(milliseconds=settings.EXCHANGE_TIMEOUT_MS + 5000)


def order_held(order: Order, now: datetime) -> bool:
    """A worker holds the order's lease: it may be sending it right now."""
    return order.lease_until is not None and now < order.lease_until


@contextmanager
def recoverable_write() -> Iterator[None]:
    """A transaction whose loss in a database crash the exchange can repair.

    The order row is committed durably before anything is sent. What is written
    afterwards — attempt claims, fills, final states, the positions they move — can be
    read again from the exchange by client order id and re-applied (fills are keyed),
    so PostgreSQL may acknowledge these commits before flushing them to disk
    (``synchronous_commit = off``: never corruption, at worst the last moments before
    a server crash are replayed from the exchange). This keeps one disk flush per order.
    """
    outermost = not connection.in_atomic_block
    # Nested in a caller's transaction it gets a savepoint: a write that finds the order
    # moved (``OrderMoved``) undoes this block only.
    with transaction.atomic(savepoint=not outermost):
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(ASYNC_COMMIT)
        yield


def order_save(order: Order, *fields: str, keep_lease: bool = False) -> None:
    """Write some fields of the order: a compare-and-set on the version it read.

    Releases the lease (a step's write ends its claim) unless ``keep_lease``. Raises
    ``OrderMoved`` when another writer got there first. A recoverable write (see
    ``recoverable_write``).
    """
    if not keep_lease:
        order.lease_holder, order.lease_until = "", None
    read = order.version
    order.version = read + 1
    if not update_row(order, (*dict.fromkeys(fields), *STEP_FIELDS), expect={"version": read},
                      async_commit=True):
        order.version = read
        raise OrderMoved(f"order {order.client_order_id} was moved by another worker")


def lookup_schedule(order: Order, cfg: OrderExecutionConfig, now: datetime, why: str) -> Next:
    """Come back for the next lookup: every grace/lookups s, and not before the grace ends
    once enough lookups missed."""
    delay = cfg.in_doubt_grace_seconds / cfg.in_doubt_lookups
    if order.in_doubt_since and order.doubt_lookups >= cfg.in_doubt_lookups:
        until = order.in_doubt_since + timedelta(seconds=cfg.in_doubt_grace_seconds)
        delay = max((until - now).total_seconds(), 0.0)
    order.next_attempt_at = now + timedelta(seconds=delay)
    order_save(order, "status", "last_error", "error_code", "attempts", "retries", "submitted_at",
          "exchange_order_id", "acknowledged_at", *PREPARED_FIELDS)
    return Next(order, delay, why)


def poll_delay(order: Order, cfg: OrderExecutionConfig, now: datetime) -> float:
    until_deadline = (order_deadline(order, cfg) - now).total_seconds()
    return max(min(cfg.status_poll_interval_ms / 1000, until_deadline), 0.0)
