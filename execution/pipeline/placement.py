"""Placement and retries: recording an order, each attempt's claim and send, the
retry backoff, and refusals before anything is sent."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from execution import handlers
from execution.alerts import raise_slippage_alert
from execution.exchanges.base import (
    BUY,
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
from execution.models import ExchangeAccount, Order, OrderPurpose, OrderSide, OrderType
from execution.pipeline.fills import order_finalize, snapshot_apply
from execution.pipeline.writes import (
    BOOK_DEPTH,
    CLAIM_FIELDS,
    PREPARED_FIELDS,
    PRICE_PLACES,
    Next,
    S,
    in_flight_window,
    lease_holder,
    lookup_schedule,
    new_client_order_id,
    order_save,
    plain,
)
from execution.slippage import signed_slippage_percent, walk_book
from tradingsite.errors import ConflictError, DomainError, TradingHalted
from tradingsite.live_config import OrderExecutionConfig
from tradingsite.services import ensure_trading_allowed, trading_halted_sql
from tradingsite.sql import insert_row, update_row


def order_submit(*, account: ExchangeAccount, symbol: str, side: str, quantity: Decimal,
                 order_type: str = OrderType.MARKET, price: Decimal | None = None,
                 purpose: str = OrderPurpose.ENTRY, expected_price: Decimal | None = None,
                 reduce_only: bool = False, strategy: Any = None, position: Any = None,
                 action: Any = None, client_order_id: str | None = None,
                 replaces: Order | None = None) -> Order:
    """Record an order with its client order id; nothing is sent yet.

    With an explicit ``client_order_id`` the call is idempotent: the order already
    recorded under that id is returned (a redelivered task finds it again).

    Every order first passes the pre-trade gate (``execution.gates``: the portfolio
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
    # a halt refuses new entries; exits always go through
    guard = trading_halted_sql() if purpose == OrderPurpose.ENTRY else None
    if client_order_id is not None and (existing := _recorded_as(order)) is not None:
        return existing  # a redelivered task: the gate decided when it was recorded
    try:
        # The gate's row locks hold until the order is recorded; inside the caller's
        # transaction this is a savepoint, so a refusal or a duplicate id undoes only it.
        with transaction.atomic():
            counted = pretrade_check(order)
            recorded = insert_row(order, unless=guard, riders=(counted,) if counted else ())
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


def _request(order: Order) -> OrderRequest:
    return OrderRequest(symbol=order.symbol, side=order.side, order_type=order.order_type,
                        amount=order.quantity, client_order_id=order.client_order_id,
                        price=order.price, reduce_only=order.reduce_only)


def attempt(order: Order, exchange: Exchange, cfg: OrderExecutionConfig, now: datetime) -> Next:
    """One placement attempt: prepare (first time), claim, look up if needed, send."""
    if order.status == S.CREATED and order.attempts == 0:
        try:
            refused = _prepare(order, exchange, cfg)
        except TransientError as exc:
            return _transient_failure(order, exc, cfg, now, sent=False)
        except ExchangeError as exc:
            return order_refuse(order, exc, now)
        if refused:
            return refused
    previous = order.status
    if order.reduce_only and order.position_id and not handlers.close_reduce_only(order):
        order.reduce_only = False  # written with the claim
    lost = claim_attempt(order, now)
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
            return lookup_schedule(order, cfg, timezone.now(), "in doubt")
        return order_refuse(order, exc, timezone.now())
    return acknowledged(order, snapshot, exchange, cfg)


def claim_attempt(order: Order, now: datetime) -> Next | None:
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
    order.lease_holder, order.lease_until = lease_holder(), now + in_flight_window()
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
            return refuse_locally(order, TradingHalted.code, f"{exc}: entry not sent")
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
        return refuse_locally(order, "min_order_size",
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
    return refuse_locally(order, "slippage", f"{detail}; order not sent")


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


def refuse_locally(order: Order, code: str, message: str) -> Next:
    order.status, order.error_code, order.last_error = S.REJECTED, code, message
    return order_finalize(order, timezone.now())


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
        order_save(order, "status", "retries", "last_error", "error_code", "attempts",
              "submitted_at", *PREPARED_FIELDS)
        return Next(order, delay, "retry")
    gave_up = f"no answer after {order.attempts} attempts: {exc}"
    if not sent:
        order.status, order.last_error = S.FAILED, gave_up
        return order_finalize(order, now)
    order.last_error = gave_up  # in doubt: looked up by client order id from here
    return lookup_schedule(order, cfg, now, "in doubt")


def order_refuse(order: Order, exc: ExchangeError, now: datetime) -> Next:
    """A rejection or a fatal error: no retry, the exchange's message kept."""
    order.status = S.REJECTED if isinstance(exc, RejectedError | OrderNotFound) else S.FAILED
    order.last_error, order.error_code = exc.message, exc.code
    return order_finalize(order, now)


def acknowledged(order: Order, snapshot: OrderSnapshot, exchange: Exchange,
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
    return snapshot_apply(order, snapshot, cfg, now, extra=(
        "exchange_order_id", "acknowledged_at", "latency_ms", "attempts", "submitted_at",
        "retries", "last_error", "error_code", *PREPARED_FIELDS))
