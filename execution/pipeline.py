"""The order pipeline: an order moves one step at a time, so no worker ever blocks.

``order_submit`` records the order and its client order id before any network
call. ``order_step`` then does exactly one thing and says when to come back
(``Next``): a placement attempt, a status poll, a lookup of an order in doubt, or
the cancel-and-verify of a timed-out order. A Celery task runs one step and
schedules the next with a countdown; tests and scripts run the steps in a loop with
an injectable sleep.

One writer at a time. Every write that moves an order is a compare-and-set on the
``version`` it read (each write bumps it), so a worker acting on a stale copy —
a recovery beside a live worker, a redelivered task — writes nothing and stops
(``OrderMoved``). A placement attempt takes a lease (``lease_holder``, ``lease_until``:
the request timeout plus a margin): until it runs out nobody else moves the order.

Orders in doubt. After any unknown outcome — a timeout, a dropped connection, a
5xx or 429 after sending, a "success" without an order id — the order is *in doubt*
(``in_doubt_since``) until the exchange answers definitively. A resend reuses its
client order id (a duplicate refusal such as Bybit's 110072 means "it exists"), and
every attempt after one whose outcome is unknown first asks the exchange for that
id. Only ``TransientError`` is retried, after ``retryDelayMs × 2^n`` (1 s, 2 s, 4 s by
default, ``maxRetries`` = 3); a rejection fails at once with the exchange's message
on the order. When the sends are over, the order is looked up by client order id
(open and history, and by exchange id once known) every ``inDoubtGraceSeconds /
inDoubtLookups`` s; "not found" becomes definitive only when ``inDoubtLookups``
lookups missed and ``inDoubtGraceSeconds`` passed since the doubt began. Until then
the order timeout does not replace it and nothing new is sent for its position. An
order declared absent that shows up later is taken back (``order_take_back``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from execution.alerts import (
    FILL_UNAPPLIED_ALERT,
    ORDER_REAPPEARED_ALERT,
    ORDER_UNKNOWN_ALERT,
    raise_order_alert,
    raise_slippage_alert,
)
from execution.exchanges import exchange_for
from execution.exchanges.base import (
    BUY,
    CANCELED,
    CLOSED,
    EXPIRED,
    REJECTED,
    Exchange,
    OrderRequest,
    OrderSnapshot,
)
from execution.exchanges.errors import (
    DuplicateOrderError,
    ExchangeError,
    OrderNotFound,
    RejectedError,
    TransientError,
)
from execution.gates import OrderRefused, pretrade_check, refusal_record
from execution.models import (
    ExchangeAccount,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
)
from execution.slippage import signed_slippage_percent, walk_book
from lifecycle.models import PositionSide, PositionState
from lifecycle.services import (
    position_apply_close_fill,
    position_flag_attention,
    position_open,
)
from tradingsite.errors import ConflictError, DomainError, TradingHalted
from tradingsite.live import broadcast
from tradingsite.live_config import OrderExecutionConfig, site_config
from tradingsite.rows import ASYNC_COMMIT, insert_row, update_row
from tradingsite.services import ensure_trading_allowed, trading_halted_sql

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
# reference price, the slippage estimate): written with the attempt's claim, or with
# the attempt's next write when the order was recorded already claimed.
PREPARED_FIELDS = ("quantity", "price", "expected_price", "estimated_slippage_percent")
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
    strategy = order.strategy
    if strategy is None and order.position_id:
        strategy = order.position.strategy
    return strategy.effective_config().order_execution if strategy else (
        site_config().order_execution)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros, for messages: 0.0004, 50000."""
    return f"{Decimal(value).normalize():f}"


def new_client_order_id(prefix: str = "o") -> str:
    """A fresh client order id; at most 36 characters (Bybit's orderLinkId limit)."""
    return f"{prefix}-{uuid.uuid4().hex[:32 - len(prefix)]}"


def order_submit(*, account: ExchangeAccount, symbol: str, side: str, quantity: Decimal,
                 order_type: str = OrderType.MARKET, price: Decimal | None = None,
                 purpose: str = OrderPurpose.ENTRY, expected_price: Decimal | None = None,
                 reduce_only: bool = False, strategy: Any = None, position: Any = None,
                 action: Any = None, client_order_id: str | None = None,
                 replaces: Order | None = None, claim: bool = False) -> Order:
    """Record an order with its client order id; nothing is sent yet.

    With an explicit ``client_order_id`` the call is idempotent: the order already
    recorded under that id is returned (a redelivered task finds it again).

    ``claim``: the caller sends the first attempt itself, in this thread (``order_place``).
    The row is then recorded already claimed for that attempt (SUBMITTING, attempt 1),
    which saves the separate claim write; the returned instance carries the claim.

    Every order first passes the pre-trade gates (``execution.gates``: the portfolio
    guard's trading states and limits), in the transaction that inserts it; a refusal
    is recorded and raised (``OrderRefused``). An entry is also refused while trading
    is halted by a check that is part of the insert.
    """
    quantity = Decimal(quantity)
    if side not in OrderSide.values:
        raise DomainError(f"side must be one of {OrderSide.values}, got {side!r}")
    if order_type not in OrderType.values:
        raise DomainError(f"order type must be one of {OrderType.values}, got {order_type!r}")
    if quantity <= 0:
        raise DomainError(f"quantity must be positive, got {quantity}")
    if order_type == OrderType.LIMIT and not (price and Decimal(price) > 0):
        raise DomainError("a limit order needs a positive price")
    if not account.enabled:
        raise DomainError(f"exchange account {account.name} is disabled")
    order = Order(account=account, symbol=symbol, side=side, quantity=quantity,
                  order_type=order_type, price=price, purpose=purpose,
                  expected_price=expected_price, reduce_only=reduce_only, strategy=strategy,
                  position=position, action=action, replaces=replaces,
                  client_order_id=client_order_id or new_client_order_id())
    if claim:  # the doubt begins with the send: the lease covers it
        now = timezone.now()
        order.status, order.attempts, order.submitted_at = S.SUBMITTING, 1, now
        order.lease_holder, order.lease_until = lease_holder(), now + _in_flight_window()
        order.in_doubt_since = now
    # a halt refuses new entries; exits always go through
    guard = trading_halted_sql() if purpose == OrderPurpose.ENTRY else None
    if client_order_id is not None and (existing := _recorded_as(order)) is not None:
        return existing  # a redelivered task: the gates decided when it was recorded
    try:
        # The gates' row locks hold until the order is recorded; inside the caller's
        # transaction this is a savepoint, so a refusal or a duplicate id undoes only it.
        with transaction.atomic():
            pretrade_check(order)
            recorded = insert_row(order, unless=guard)
    except OrderRefused as refused:
        refusal_record(refused)
        raise
    except IntegrityError:
        if client_order_id is None or (existing := _recorded_as(order)) is None:
            raise
        return existing
    if not recorded:  # the insert's halt check refused it
        ensure_trading_allowed()  # raises TradingHalted with the halt's reason
        raise TradingHalted("trading was halted when the entry was recorded")
    order.claim_held = claim
    return order


def _recorded_as(order: Order) -> Order | None:
    """The order already recorded under ``order``'s client order id, if any; a different
    order under that id is a ``ConflictError``."""
    existing = Order.objects.select_related("account").filter(
        client_order_id=order.client_order_id).first()
    if existing is not None and (existing.symbol, existing.side, existing.account_id) != (
            order.symbol, order.side, order.account_id):
        raise ConflictError(f"client order id {order.client_order_id} is already used by "
                            "another order")
    return existing


def lease_holder() -> str:
    """Who holds a lease taken in this process (shown to the operator)."""
    return _holder(os.getpid())


@cache
def _holder(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


def _take_insert_claim(order: Order) -> bool:
    """True once for an order this thread recorded already claimed (``order_submit(claim=True)``).

    Until its first send such an order is handled as never sent: CREATED, attempt 0.
    """
    if not order.__dict__.pop("claim_held", False):
        return False
    order.status, order.attempts, order.submitted_at = S.CREATED, 0, None
    order.in_doubt_since = None
    return True


# --- the step ------------------------------------------------------------------------

def order_step(order: Order, *, exchange: Exchange | None = None) -> Next:
    """Advance ``order`` by one step and say when to come back.

    A step whose write finds the order moved by another writer ends here: that
    writer (and whoever it scheduled) carries the order on.
    """
    if order.is_final:
        return Next(order, None, "final")
    now = timezone.now()
    if not getattr(order, "claim_held", False) and order_held(order, now):
        return Next(order, _lease_left(order, now), "attempt in flight elsewhere")
    try:
        exchange = exchange or exchange_for(order.account)
    except ExchangeError as exc:  # e.g. an unknown ccxt exchange id on the account
        _take_insert_claim(order)
        if order.status == S.CREATED and order.attempts == 0:
            return _moved_aside(order, _refused, order, exc, now)  # never sent
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
        return _cancel_and_verify(order, exchange, cfg, now)
    if now >= order_deadline(order, cfg):
        return order_expire(order, exchange=exchange)
    if order.next_attempt_at and now < order.next_attempt_at:
        return Next(order, (order.next_attempt_at - now).total_seconds(), "retry scheduled")
    if order.status == S.UNKNOWN and _sending_over(order):
        return _verify_in_doubt(order, exchange, cfg, now)
    if order.status in UNACKNOWLEDGED:
        return _attempt(order, exchange, cfg, now)
    return _poll(order, exchange, cfg, now)


def order_deadline(order: Order, cfg: OrderExecutionConfig) -> datetime:
    return order.created_at + timedelta(seconds=cfg.order_timeout_seconds)


def _in_flight_window() -> timedelta:
    """How long a claimed attempt may be waiting on the exchange (request timeout + margin)."""
    return timedelta(milliseconds=settings.EXCHANGE_TIMEOUT_MS + 5000)


def order_held(order: Order, now: datetime) -> bool:
    """A worker holds the order's lease: it may be sending it right now."""
    return order.lease_until is not None and now < order.lease_until


def _lease_left(order: Order, now: datetime) -> float:
    return max((order.lease_until - now).total_seconds(), 0.0)


def _sending_over(order: Order) -> bool:
    """Every scheduled attempt was made (a retry is scheduled by counting it in ``retries``
    before it is claimed, which counts it in ``attempts``): only lookups are left."""
    return order.attempts > order.retries


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


def _save(order: Order, *fields: str, keep_lease: bool = False) -> None:
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


# --- placement -----------------------------------------------------------------------

def _request(order: Order) -> OrderRequest:
    return OrderRequest(symbol=order.symbol, side=order.side, order_type=order.order_type,
                        amount=order.quantity, client_order_id=order.client_order_id,
                        price=order.price, reduce_only=order.reduce_only)


def _attempt(order: Order, exchange: Exchange, cfg: OrderExecutionConfig, now: datetime) -> Next:
    """One placement attempt: prepare (first time), claim, look up if needed, send."""
    claimed_at_insert = _take_insert_claim(order)
    if order.status == S.CREATED and order.attempts == 0:
        try:
            refused = _prepare(order, exchange, cfg)
        except TransientError as exc:
            return _transient_failure(order, exc, cfg, now, sent=False)
        except ExchangeError as exc:
            return _refused(order, exc, now)
        if refused:
            return refused
    previous = order.status
    if claimed_at_insert:
        order.status, order.attempts, order.submitted_at = S.SUBMITTING, 1, now
        order.in_doubt_since = now
    else:
        lost = _claim_attempt(order, now)
        if lost is not None:
            return lost
    try:
        snapshot = None
        if previous != S.CREATED:  # an earlier attempt may have reached the exchange
            snapshot = exchange.find_order(order.client_order_id, order.symbol)
        if snapshot is None:
            snapshot = _send(order, exchange)
    except TransientError as exc:
        return _transient_failure(order, exc, cfg, timezone.now(), sent=True)
    except ExchangeError as exc:
        if previous != S.CREATED:  # refused now, but an earlier send's outcome is unknown
            order.status, order.error_code = S.UNKNOWN, exc.code
            order.last_error = (f"resend refused ({exc.message}); an earlier attempt's outcome "
                                "is unknown")
            return _schedule_lookup(order, cfg, timezone.now(), "in doubt")
        return _refused(order, exc, timezone.now())
    return _acknowledged(order, snapshot, exchange, cfg)


def _claim_attempt(order: Order, now: datetime) -> Next | None:
    """Claim the next attempt (compare-and-set) and take the lease; ``None`` when claimed.

    The doubt begins with the send: from here the exchange may have the order. What
    _prepare decided travels with the claim (one write per attempt); a claim lost in a
    crash is harmless: the resend is refused as a duplicate. A never-sent entry is not
    sent once trading is halted (checked in the same statement).
    """
    never_sent = order.status == S.CREATED and order.attempts == 0
    guard = trading_halted_sql() if order.purpose == OrderPurpose.ENTRY and never_sent else None
    read = {name: getattr(order, name) for name in CLAIM_FIELDS}
    order.status, order.attempts, order.next_attempt_at = S.SUBMITTING, order.attempts + 1, None
    if never_sent:
        order.retries = 0  # the retries of a failed preparation were not sends
    order.submitted_at, order.updated_at = order.submitted_at or now, now
    order.lease_holder, order.lease_until = lease_holder(), now + _in_flight_window()
    order.in_doubt_since, order.doubt_lookups = now, 0
    order.version = read["version"] + 1
    fields = (*CLAIM_FIELDS, "retries") if never_sent else CLAIM_FIELDS
    if update_row(order, fields, expect={"version": read["version"]}, unless=guard,
                  async_commit=True):
        return None
    for name, value in read.items():
        setattr(order, name, value)
    if guard is not None:
        try:
            ensure_trading_allowed()
        except TradingHalted as exc:
            return _refuse_locally(order, TradingHalted.code, f"{exc}: entry not sent")
    return Next(order, None, "attempt claimed by another worker")


def _send(order: Order, exchange: Exchange) -> OrderSnapshot:
    """Send the order; a duplicate refusal means it exists. ``TransientError``: unknown outcome."""
    try:
        snapshot = exchange.place_order(_request(order))
    except DuplicateOrderError as exc:
        snapshot = exchange.find_order(order.client_order_id, order.symbol)
        if snapshot is None:
            raise TransientError(f"exchange says the client order id exists but does not "
                                 f"list it yet: {exc}", code=exc.code) from exc
    if not snapshot.id:  # e.g. a 200 reply whose body was cut off: not an acknowledgement
        raise TransientError("the exchange answered without an order id: outcome unknown",
                             code="no_order_id")
    return snapshot


def _prepare(order: Order, exchange: Exchange, cfg: OrderExecutionConfig) -> Next | None:
    """Round to the market's precision, check the minimum size and the slippage estimate.

    Returns the final ``Next`` when the order is refused before it is sent; otherwise
    the adjusted fields are written by the attempt's claim.
    """
    amount = exchange.amount_to_precision(order.symbol, order.quantity)
    minimum = exchange.min_order_amount(order.symbol)
    if amount <= 0 or (minimum and amount < minimum):
        rounded = f" ({plain(amount)} on the market's step)" if amount != order.quantity else ""
        return _refuse_locally(order, "min_order_size",
                               f"quantity {plain(order.quantity)}{rounded} is below the "
                               f"market's minimum order size {plain(minimum or amount)}")
    order.quantity = amount
    if order.price is not None:
        order.price = exchange.price_to_precision(order.symbol, order.price)
    expected, estimated = _estimate_fill(order, exchange)
    # A limit order's trader expects its limit price; a market order the arrival mid.
    order.expected_price = order.expected_price or (
        order.price if order.order_type == OrderType.LIMIT else expected)
    order.estimated_slippage_percent = signed_slippage_percent(
        order.side, order.expected_price, estimated)
    limit = Decimal(str(cfg.max_slippage_percent))
    if order.estimated_slippage_percent <= limit:
        return None
    detail = (f"estimated slippage {order.estimated_slippage_percent:.4f}% exceeds "
              f"maxSlippagePercent {plain(limit)}% (expected price "
              f"{plain(order.expected_price)}, estimated fill "
              f"{plain(estimated.quantize(PRICE_PLACES))})")
    if order.purpose == OrderPurpose.EMERGENCY_CLOSE:
        raise_slippage_alert(order, detail=detail)
        return None
    return _refuse_locally(order, "slippage", f"{detail}; order not sent")


def _estimate_fill(order: Order, exchange: Exchange) -> tuple[Decimal, Decimal]:
    """(reference price, estimated average fill) from the book, the ticker as fallback."""
    book = exchange.fetch_order_book(order.symbol, BOOK_DEPTH)
    levels = book.asks if order.side == BUY else book.bids
    estimated = walk_book(levels, order.quantity)
    top = book.top()
    reference = (top.bid + top.ask) / 2 if top.bid and top.ask else None
    if estimated is None or reference is None:
        ticker = exchange.fetch_ticker(order.symbol)
        touch = ticker.ask if order.side == BUY else ticker.bid
        reference = reference or ticker.mid
        estimated = estimated or touch or ticker.last
        if reference is None or estimated is None:
            raise TransientError(f"no price for {order.symbol}: empty book and ticker",
                                 code="no_price")
    if order.order_type == OrderType.LIMIT:  # a limit order never fills beyond its price
        estimated = min(estimated, order.price) if order.side == BUY else max(estimated,
                                                                              order.price)
    return reference, estimated


def _refuse_locally(order: Order, code: str, message: str) -> Next:
    order.status, order.error_code, order.last_error = S.REJECTED, code, message
    return _finalize(order, timezone.now())


def _transient_failure(order: Order, exc: TransientError, cfg: OrderExecutionConfig,
                       now: datetime, *, sent: bool) -> Next:
    """Schedule the next attempt after ``retryDelayMs × 2^retries``, or stop sending.

    Never sent: the order fails. Sent: its outcome is unknown, so it stays in doubt
    and is looked up by client order id until the exchange answers definitively.
    """
    order.error_code = exc.code
    if sent:
        order.status = S.UNKNOWN
    if order.retries < cfg.max_retries:
        delay = cfg.retry_delay_ms / 1000 * 2 ** order.retries
        order.retries += 1
        order.next_attempt_at = now + timedelta(seconds=delay)
        order.last_error = (f"{exc} (attempt {max(order.attempts, 1)}; "
                            f"retry {order.retries} of {cfg.max_retries} in {delay:g} s)")
        _save(order, "status", "retries", "last_error", "error_code", "attempts",
              "submitted_at", *PREPARED_FIELDS)
        return Next(order, delay, "retry")
    gave_up = f"no answer after {order.attempts} attempts: {exc}"
    if not sent:
        order.status, order.last_error = S.FAILED, gave_up
        return _finalize(order, now)
    order.last_error = gave_up  # in doubt: looked up by client order id from here
    return _schedule_lookup(order, cfg, now, "in doubt")


def _refused(order: Order, exc: ExchangeError, now: datetime) -> Next:
    """A rejection or a fatal error: no retry, the exchange's message kept."""
    order.status = S.REJECTED if isinstance(exc, RejectedError | OrderNotFound) else S.FAILED
    order.last_error, order.error_code = exc.message, exc.code
    return _finalize(order, now)


def _acknowledged(order: Order, snapshot: OrderSnapshot, exchange: Exchange,
                  cfg: OrderExecutionConfig) -> Next:
    now = timezone.now()
    order.exchange_order_id = snapshot.id
    order.acknowledged_at = now
    order.latency_ms = int((now - (order.submitted_at or now)).total_seconds() * 1000)
    if snapshot.status is None:  # ccxt's create answers ids only: ask for the state
        try:
            snapshot = exchange.fetch_order(snapshot.id, order.symbol)
        except (TransientError, OrderNotFound):
            pass
    return _apply_snapshot(order, snapshot, cfg, now, extra=(
        "exchange_order_id", "acknowledged_at", "latency_ms", "attempts", "submitted_at",
        "retries", "last_error", "error_code", *PREPARED_FIELDS))


# --- orders in doubt -------------------------------------------------------------------

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
    return _schedule_lookup(order, cfg, now, "in doubt: not found yet")


def _look_up_in_doubt(order: Order, exchange: Exchange, now: datetime, *, by_id: bool = True
                      ) -> OrderSnapshot | Next:
    """The snapshot of an order the exchange may not have, or the step that follows a miss."""
    snapshot = order_locate(order, exchange, by_id=by_id)
    if snapshot is None:
        return order_not_found(order, now=now)
    return snapshot


def _verify_in_doubt(order: Order, exchange: Exchange, cfg: OrderExecutionConfig,
                     now: datetime) -> Next:
    """The sends are over and their outcome unknown: one lookup by client order id."""
    try:
        found = _look_up_in_doubt(order, exchange, now)
    except TransientError as exc:
        log.warning("order %s: lookup in doubt failed (%s)", order.client_order_id, exc)
        return _schedule_lookup(order, cfg, now, "in doubt: lookup failed")
    if isinstance(found, Next):
        return found
    return _acknowledged(order, found, exchange, cfg)


def _schedule_lookup(order: Order, cfg: OrderExecutionConfig, now: datetime, why: str) -> Next:
    """Come back for the next lookup: every grace/lookups s, and not before the grace ends
    once enough lookups missed."""
    delay = cfg.in_doubt_grace_seconds / cfg.in_doubt_lookups
    if order.in_doubt_since and order.doubt_lookups >= cfg.in_doubt_lookups:
        until = order.in_doubt_since + timedelta(seconds=cfg.in_doubt_grace_seconds)
        delay = max((until - now).total_seconds(), 0.0)
    order.next_attempt_at = now + timedelta(seconds=delay)
    _save(order, "status", "last_error", "error_code", "attempts", "retries", "submitted_at",
          "exchange_order_id", "acknowledged_at", *PREPARED_FIELDS)
    return Next(order, delay, why)


def _end_absent(order: Order, cfg: OrderExecutionConfig, now: datetime, *, note: str = ""
                ) -> Next:
    """The exchange does not have ``order``: it ends with what was filled so far.

    Never sent: expired at its timeout, cancelled on request, failed otherwise. Sent and
    proven absent: FAILED if never acknowledged (the request never arrived), EXPIRED if
    acknowledged before (the exchange no longer knows it); an ``order_unknown`` alert
    says so. A timed-out emergency close is then replaced (``_after_cancel``).
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
    step = _after_cancel(order, cfg, now)
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
    step = _apply_snapshot(order, snapshot, order_config(order), now, extra=(
        "exchange_order_id", "acknowledged_at", "error_code", "finalized_at"))
    raise_order_alert(order, kind=ORDER_REAPPEARED_ALERT,
                      message=f"{note}; now {order.status}, filled "
                              f"{plain(order.filled_quantity)} of {plain(order.quantity)}")
    return step


# --- polling, fills, finalisation ----------------------------------------------------

def _poll(order: Order, exchange: Exchange, cfg: OrderExecutionConfig, now: datetime) -> Next:
    try:
        snapshot = exchange.fetch_order(order.exchange_order_id, order.symbol)
    except OrderNotFound:  # no longer listed by id: in doubt until the exchange says more
        try:
            found = _look_up_in_doubt(order, exchange, now, by_id=False)
        except TransientError as exc:
            return _poll_failed(order, exc, cfg, now)
        if isinstance(found, Next):
            return found
        snapshot = found
    except TransientError as exc:
        return _poll_failed(order, exc, cfg, now)
    return _apply_snapshot(order, snapshot, cfg, now)


def _poll_failed(order: Order, exc: ExchangeError, cfg: OrderExecutionConfig,
                 now: datetime) -> Next:
    order.last_error = f"status poll: {exc}"
    _save(order, "last_error")
    return Next(order, _poll_delay(order, cfg, now), "poll failed")


def _poll_delay(order: Order, cfg: OrderExecutionConfig, now: datetime) -> float:
    until_deadline = (order_deadline(order, cfg) - now).total_seconds()
    return max(min(cfg.status_poll_interval_ms / 1000, until_deadline), 0.0)


def _status_from(snapshot: OrderSnapshot, order: Order) -> str:
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


def _apply_snapshot(order: Order, snapshot: OrderSnapshot, cfg: OrderExecutionConfig,
                    now: datetime, *, extra: tuple[str, ...] = ()) -> Next:
    """Record fills and status from the exchange; finalise when the order is over.

    The exchange answered: the order is no longer in doubt. An exit order's fill moves
    its position in the same transaction as the order's own write; other orders need a
    single write, which commits on its own.
    """
    moves_position = order.purpose != OrderPurpose.ENTRY and order.position_id is not None
    order.in_doubt_since, order.doubt_lookups, order.next_attempt_at = None, 0, None
    with recoverable_write() if moves_position else nullcontext():
        _record_fill(order, snapshot, now)
        order.status = _status_from(snapshot, order)
        if order.is_final:
            if order.status == S.REJECTED and not order.last_error:
                order.last_error = "rejected by the exchange"
            return _finalize(order, now)
        _save(order, "status", "filled_quantity", "average_fill_price", "fee", "fee_currency",
              "slippage_percent", "last_error", *extra)
    return Next(order, _poll_delay(order, cfg, now), "open")


def _record_fill(order: Order, snapshot: OrderSnapshot, now: datetime) -> None:
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
            position_apply_close_fill(
                order.position, fill_key=f"{order.client_order_id}:{filled.normalize()}",
                quantity=delta, price=delta_price.quantize(PRICE_PLACES), fee=delta_fee,
                filled_at=now)
        except (DomainError, ValueError) as exc:  # the position moved on without this order
            log.error("order %s: exit fill not applied to position %s: %s",
                      order.client_order_id, order.position_id, exc)
            why = f"exit fill of {plain(delta)} not applied to the position: {exc}"
            order.last_error = why
            position_flag_attention(order.position_id, reason=f"{order.client_order_id}: {why}",
                                    actor="execution")
            raise_order_alert(order, kind=FILL_UNAPPLIED_ALERT, message=(
                f"{why}; the fill stays on the order and the position is reconciled with the "
                "exchange before anything else is sent for it"))


def _finalize(order: Order, now: datetime) -> Next:
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
            order.position = position_open(
                strategy=order.strategy, symbol=order.symbol,
                side=PositionSide.LONG if order.side == OrderSide.BUY else PositionSide.SHORT,
                quantity=order.filled_quantity, entry_price=order.average_fill_price,
                opened_at=order.filled_at or now, entry_fee=order.fee, actor="execution",
                fill_key=f"{order.client_order_id}:{order.filled_quantity.normalize()}")
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


# --- reconciliation after a restart ---------------------------------------------------

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
    return _apply_snapshot(order, snapshot, order_config(order), when, extra=extra)


# --- timeout, cancel, verify, replace -------------------------------------------------

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
    _save(order, "status", "timed_out", "last_error")
    return _cancel_and_verify(order, exchange, cfg, timezone.now())


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
            _save(order, "status", "last_error", keep_lease=True)
            return True
        except OrderMoved:
            order.refresh_from_db()
    return order.status == S.CANCELLING


def _cancel_and_verify(order: Order, exchange: Exchange, cfg: OrderExecutionConfig,
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
            found = _look_up_in_doubt(order, exchange, now)
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
            found = _look_up_in_doubt(order, exchange, now, by_id=False)
            if isinstance(found, Next):
                return found
            snapshot = found
    except TransientError as exc:
        log.warning("order %s: cancel/verify incomplete (%s)", order.client_order_id, exc)
        return retry
    order.in_doubt_since, order.doubt_lookups, order.next_attempt_at = None, 0, None
    with recoverable_write():
        _record_fill(order, snapshot, now)
        order.status = _status_from(snapshot, order)
        if not order.is_final:
            _save(order, "status", "filled_quantity", "average_fill_price", "fee",
                  "fee_currency", "slippage_percent", "last_error", "exchange_order_id",
                  "acknowledged_at")
            return retry
        return _after_cancel(order, cfg, now)


def _after_cancel(order: Order, cfg: OrderExecutionConfig, now: datetime) -> Next:
    """Finalise; a timed-out emergency close with quantity left is replaced at market.

    Only once the order is final or proven absent (this runs then), and only when no
    other order of the position is still active (one may be in doubt): the order's end
    and its replacement commit together.
    """
    replace = (order.purpose == OrderPurpose.EMERGENCY_CLOSE and order.timed_out
               and order.remaining_quantity > 0 and order.position_id
               and _replacement_number(order) <= cfg.max_retries)
    if not replace:
        return _finalize(order, now)
    position = order.position
    position.refresh_from_db(fields=["state", "quantity"])
    if position.state != PositionState.CLOSING or position.quantity <= 0:
        return _finalize(order, now)
    with recoverable_write():
        _finalize(order, now)
        busy = Order.objects.filter(position=position, status__in=S.active()).exclude(
            pk=order.pk).values_list("client_order_id", flat=True).first()
        if busy:
            log.warning("emergency close %s timed out; not replaced: order %s of the position "
                        "is still active", order.client_order_id, busy)
            return Next(order, None, "final")
        replacement = order_submit(
            account=order.account, symbol=order.symbol, side=order.side,
            quantity=min(order.remaining_quantity, position.quantity),
            order_type=OrderType.MARKET, purpose=OrderPurpose.EMERGENCY_CLOSE,
            reduce_only=True, strategy=order.strategy, position=position, action=order.action,
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
