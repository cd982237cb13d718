"""The paper exchange: an in-process simulated exchange with fault injection.

State (orders, balances, positions, feeds) lives in the process, one exchange per
account in a registry, so every call of that process sees the same orders. That
suits the embedded default (one process) and the tests; with several worker
processes each would hold its own book — use a real exchange (or its testnet)
there. ``reset_paper_exchanges()`` forgets every book (tests call it between cases).

Fills: a market order takes liquidity from the simulated book (levels of
``book.levelNotional`` each, ``book.levelStepPercent`` apart around the mid with
``book.spreadPercent`` spread) plus ``slippagePercent``; a limit order fills at
once when marketable, otherwise at its limit price when the market crosses it
(checked at every call). Fees: taker/maker percent of the notional. Margin:
notional / leverage must be free in the settle currency.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from execution.exchanges.base import (
    BUY,
    CANCELED,
    CLOSED,
    OPEN,
    SELL,
    BalanceLine,
    Exchange,
    ExchangePosition,
    MarketRules,
    Ohlcv,
    OrderBook,
    OrderRequest,
    OrderSnapshot,
    Ticker,
    TradeFill,
    round_to_step,
)
from execution.exchanges.errors import (
    DuplicateOrderError,
    ExchangeError,
    FatalError,
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFound,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from execution.exchanges.feeds import (
    CandleReplayFeed,
    Feed,
    ManualFeed,
    RandomWalkFeed,
    load_candle_file,
    symbol_from_file_name,
)
from execution.exchanges.paper_config import (
    AFTER_KINDS,
    BEFORE_KINDS,
    DEFAULT_START,
    FaultSpec,
    PaperConfig,
    parse_paper_config,
)
from execution.slippage import walk_book

HUNDRED = Decimal("100")
ZERO = Decimal("0")


def settle_currency(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``USDT``; ``ETH/BTC`` → ``BTC``."""
    if ":" in symbol:
        return symbol.split(":", 1)[1].split("-")[0]
    return symbol.split("/", 1)[1] if "/" in symbol else symbol


@dataclass
class PaperOrder:
    id: str
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    amount: Decimal
    price: Decimal | None
    reduce_only: bool
    created_at: datetime
    status: str = OPEN
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    frozen: bool = False  # stays open: never fills by itself (fault injection)

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    def snapshot(self, fee_currency: str) -> OrderSnapshot:
        return OrderSnapshot(
            id=self.id, client_order_id=self.client_order_id, symbol=self.symbol, side=self.side,
            order_type=self.order_type, status=self.status, amount=self.amount,
            filled=self.filled, average=(self.cost / self.filled) if self.filled else None,
            price=self.price, fee=self.fee, fee_currency=fee_currency, timestamp=self.created_at)


@dataclass
class PaperPosition:
    size: Decimal = ZERO  # signed: long > 0
    entry_price: Decimal = ZERO
    opened_at: datetime | None = None


# What the paper exchange tells its stream subscribers: (topic, payload).
StreamListener = Callable[[str, Any], None]


class PaperExchange(Exchange):
    """A simulated exchange; thread-safe (one lock per exchange)."""

    name = "paper"

    def __init__(self, config: PaperConfig, *, quote_currency: str = "USDT",
                 starting_capital: Decimal = Decimal("10000"),
                 sleep: Callable[[float], None] = time.sleep):
        self._lock = threading.RLock()
        self.sleep = sleep
        self.quote_currency = quote_currency
        self._ids = itertools.count(1)
        self.orders: dict[str, PaperOrder] = {}
        self._by_client_id: dict[str, str] = {}
        self.positions: dict[str, PaperPosition] = {}
        self.cash: dict[str, Decimal] = {quote_currency: Decimal(starting_capital)}
        self._feeds: dict[str, Feed] = {}
        self._delayed: list[tuple[datetime, OrderRequest]] = []
        self._faults_held = False
        self.calls: Counter[str] = Counter()
        self.fills: list[TradeFill] = []
        self._fill_ids = itertools.count(1)
        self._listeners: list[StreamListener] = []
        self.streams_down = False
        self.configure(config)
        self.cash.update(config.balances)

    # --- configuration and fault injection ---------------------------------------

    def configure(self, config: PaperConfig) -> None:
        """Apply new settings; orders, balances and positions are kept, faults restart."""
        with self._lock:
            self.config = config
            self._faults: list[list[Any]] = [[spec, spec.times] for spec in config.faults]
            self._feeds.clear()

    def inject(self, *faults: FaultSpec) -> None:
        """Queue extra faults (consumed after those of the config)."""
        with self._lock:
            self._faults.extend([spec, spec.times] for spec in faults)

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move a symbol's market to ``price`` (replaces its feed by a manual one)."""
        with self._lock:
            self._feeds[symbol] = ManualFeed(Decimal(price))
            self._match(symbol)
            self._publish("ticker", self.current_ticker(symbol))

    # --- the stream (what ``PaperStream`` subscribes to) ------------------------------

    def subscribe(self, listener: StreamListener) -> Callable[[], None]:
        """Hear every order update, fill, position change and price move; returns the
        unsubscribe. ``TransientError`` while the streams are down (``drop_streams``)."""
        with self._lock:
            if self.streams_down:
                raise TransientError("paper: stream connection refused", code="stream_down")
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def drop_streams(self) -> None:
        """Fault injection: every stream connection drops and none connects until
        ``resume_streams``; what happens meanwhile is never sent (no backfill)."""
        with self._lock:
            self.streams_down = True
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener("disconnect", "paper: stream connection dropped")

    def resume_streams(self) -> None:
        with self._lock:
            self.streams_down = False

    def _publish(self, topic: str, payload: Any) -> None:
        for listener in list(self._listeners):
            listener(topic, payload)

    def current_ticker(self, symbol: str) -> Ticker:
        """The ticker now, without counting a call or consuming a fault (the stream's view)."""
        with self._lock:
            book = self._book(symbol, depth=1)
            mid = self._mid(symbol)
            return Ticker(symbol, book.bids[0][0], book.asks[0][0], mid, book.timestamp,
                          mark=mid)

    def _position_view(self, symbol: str) -> ExchangePosition:
        """One symbol's position as the exchange shows it (quantity 0: flat)."""
        position = self.positions.get(symbol, PaperPosition())
        mark = self._mid(symbol)
        direction = 1 if position.size >= 0 else -1
        return ExchangePosition(
            symbol, "long" if direction > 0 else "short", abs(position.size),
            position.entry_price or None, mark,
            (mark - position.entry_price) * abs(position.size) * direction,
            opened_at=position.opened_at if position.size else None)

    def trade_elsewhere(self, symbol: str, side: str, amount: Decimal) -> OrderSnapshot:
        """A market order placed on the account by someone else (by hand, another bot):
        no client order id of ours, filled at once."""
        with self._lock:
            request = OrderRequest(symbol=symbol, side=side, order_type="market",
                                   amount=Decimal(amount),
                                   client_order_id=f"manual-{next(self._ids)}")
            return self._snapshot(self._create(request))

    def clear_faults(self) -> None:
        """Drop every fault still queued (the config's and the injected ones)."""
        with self._lock:
            self._faults = []

    def faults_left(self) -> int:
        """How many fault firings are still queued."""
        with self._lock:
            return sum(left for _, left in self._faults)

    @contextmanager
    def faults_held(self) -> Iterator[None]:
        """No queued fault fires inside (an observer's reads must not use up a scenario's faults)."""
        held, self._faults_held = self._faults_held, True
        try:
            yield
        finally:
            self._faults_held = held

    def _take_fault(self, call: str, kinds: tuple[str, ...]) -> FaultSpec | None:
        if self._faults_held:
            return None
        for entry in self._faults:
            spec, left = entry
            if left > 0 and spec.on in (call, "any") and spec.kind in kinds:
                entry[1] -= 1
                return spec
        return None

    def _enter(self, call: str) -> None:
        """Count the call, wait the simulated latency, raise a 'before' fault if one is due."""
        self.calls[call] += 1
        if self._delayed:
            self._process_delayed()
        if self.config.latency_ms:
            self.sleep(self.config.latency_ms / 1000)
        spec = self._take_fault(call, BEFORE_KINDS)
        if spec:
            raise self._fault_error(spec)

    def _after(self, call: str) -> None:
        spec = self._take_fault(call, AFTER_KINDS)
        if spec:
            raise self._fault_error(spec)

    @staticmethod
    def _fault_error(spec: FaultSpec) -> ExchangeError:
        kind = spec.kind.removesuffix("_after_accept")
        if kind == "timeout":
            return TransientError("paper: read timed out", code="timeout")
        if kind == "drop":
            return TransientError("paper: connection dropped", code="connection_dropped")
        if kind == "rate_limit":
            return RateLimitedError("paper: too many visits", code="10006")
        if kind == "unavailable":
            return TransientError("paper: service unavailable", code="503")
        if kind == "auth":
            return FatalError(spec.message or "paper: invalid api key", code="10003")
        if spec.error == "insufficient_funds":
            return InsufficientFundsError(spec.message or "ab not enough for new order",
                                          code="110007")
        if spec.error == "bad_symbol":
            return RejectedError(spec.message or "symbol invalid", code="10001")
        return InvalidOrderError(spec.message or "order rejected", code="10001")

    # --- market ------------------------------------------------------------------

    def _feed(self, symbol: str) -> Feed:
        feed = self._feeds.get(symbol)
        if feed is None:
            feed = self._feeds[symbol] = self._build_feed(symbol)
        return feed

    def _build_feed(self, symbol: str) -> Feed:
        cfg = self.config.feed
        files = cfg.files
        if cfg.type == "candle_replay" and not files:
            files = {symbol_from_file_name(p.name): p.name
                     for p in sorted(Path(settings.PAPER_CANDLE_DIR).glob("*.csv"))}
        start_price = cfg.prices.get(symbol, cfg.default_price)
        if cfg.type == "candle_replay" and symbol in files:
            data = load_candle_file(str(Path(settings.PAPER_CANDLE_DIR) / files[symbol]))
            return CandleReplayFeed(data, start=cfg.start_at or DEFAULT_START,
                                    timeframe=cfg.timeframe, loop=cfg.loop)
        if cfg.type == "manual":
            return ManualFeed(start_price)
        return RandomWalkFeed(symbol=symbol, seed=cfg.seed, start_price=start_price,
                              anchor=cfg.start_at or timezone.now(),
                              volatility_percent=cfg.volatility_percent,
                              step_seconds=cfg.step_seconds)

    def _mid(self, symbol: str) -> Decimal:
        return self._feed(symbol).price(timezone.now())

    def _book(self, symbol: str, depth: int | None = None) -> OrderBook:
        book = self.config.book
        rules = self.market_rules(symbol)
        mid = self._mid(symbol)
        half_spread = mid * book.spread_percent / HUNDRED / 2
        step = mid * book.level_step_percent / HUNDRED
        size = self.amount_to_precision(symbol, book.level_notional / mid) or rules.amount_step
        levels = range(depth or book.depth)
        bids = [(round_to_step(mid - half_spread - i * step, rules.price_step, ROUND_FLOOR), size)
                for i in levels]
        asks = [(round_to_step(mid + half_spread + i * step, rules.price_step, ROUND_CEILING),
                 size) for i in levels]
        return OrderBook(symbol, bids, asks, timezone.now())

    def market_rules(self, symbol: str) -> MarketRules:
        market = self.config.market(symbol)
        return MarketRules(symbol, market.amount_step, market.price_step,
                           market.min_amount or market.amount_step)

    # --- orders --------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> OrderSnapshot:
        with self._lock:
            self._enter("place")
            late = self._take_fault("place", ("delayed_accept",))
            if late:  # processed later: the answer never comes
                self._delayed.append((timezone.now() + timedelta(seconds=float(late.seconds)),
                                      request))
                raise TransientError("paper: read timed out", code="timeout")
            order = self._create(request)
            self._after("place")
            if self._take_fault("place", ("truncated_after_accept",)):
                return replace(self._snapshot(order), id="", status=None)
            return self._snapshot(order)

    def _create(self, request: OrderRequest) -> PaperOrder:
        self._validate(request)
        order = PaperOrder(
            id=f"paper-{next(self._ids)}", client_order_id=request.client_order_id,
            symbol=request.symbol, side=request.side, order_type=request.order_type,
            amount=Decimal(request.amount), price=request.price,
            reduce_only=request.reduce_only, created_at=timezone.now())
        self.orders[order.id] = order
        if order.client_order_id:
            self._by_client_id[order.client_order_id] = order.id
        behaviour = self._take_fault("place", ("stay_open", "partial_fill"))
        if behaviour and behaviour.kind == "partial_fill":
            part = self.amount_to_precision(order.symbol, order.amount * behaviour.ratio)
            if part > 0:
                self._take_liquidity(order, part)
        if behaviour:
            order.frozen = True
        else:
            self._try_fill(order, placing=True)
        return order

    def _process_delayed(self) -> None:
        """Requests whose processing was delayed arrive now (a duplicate id is refused)."""
        now = timezone.now()
        due = [entry for entry in self._delayed if entry[0] <= now]
        self._delayed = [entry for entry in self._delayed if entry[0] > now]
        for _, request in due:
            try:
                self._create(request)
            except ExchangeError:
                pass  # refused (e.g. the client id exists): nobody hears the answer

    def _validate(self, request: OrderRequest) -> None:
        if request.side not in (BUY, SELL):
            raise InvalidOrderError(f"side must be buy or sell, got {request.side!r}",
                                    code="10001")
        if request.order_type not in ("market", "limit"):
            raise InvalidOrderError(f"unsupported order type {request.order_type!r}",
                                    code="10001")
        if request.order_type == "limit" and not (request.price and request.price > 0):
            raise InvalidOrderError("a limit order needs a positive price", code="10001")
        minimum = self.min_order_amount(request.symbol) or ZERO
        if request.amount <= 0 or request.amount < minimum:
            raise InvalidOrderError(f"order quantity {request.amount} is below the minimum "
                                    f"{minimum}", code="110094")
        if request.client_order_id in self._by_client_id:
            raise DuplicateOrderError("OrderLinkedID is duplicate", code="110072")
        position = self.positions.get(request.symbol, PaperPosition())
        reducing = (position.size > 0 and request.side == SELL) or (
            position.size < 0 and request.side == BUY)
        if request.reduce_only:
            if self.config.strict_reduce_only and (
                    not reducing or request.amount > abs(position.size)):
                raise InvalidOrderError("current position is zero or the order would increase "
                                        "it (reduce-only)", code="110017")
            return
        price = request.price or self._mid(request.symbol)
        settle = settle_currency(request.symbol)
        margin = request.amount * price / self.config.leverage
        fee = request.amount * price * self.config.fees.taker_percent / HUNDRED
        if margin + fee > self._free(settle):
            raise InsufficientFundsError(
                f"ab not enough for new order: needs {margin + fee:.8f} {settle}, free "
                f"{self._free(settle):.8f}", code="110007")

    def _try_fill(self, order: PaperOrder, *, placing: bool = False) -> None:
        """Fill what the market allows now: all of a market order, a crossed limit order.

        A limit order marketable when placed takes liquidity at the touch (taker); a
        resting one crossed later fills at its limit price (maker).
        """
        if order.status != OPEN or order.frozen or order.remaining <= 0:
            return
        if order.order_type == "market":
            self._take_liquidity(order, order.remaining)
            return
        book = self._book(order.symbol, depth=1)
        touch = book.asks[0][0] if order.side == BUY else book.bids[0][0]
        crossed = touch <= order.price if order.side == BUY else touch >= order.price
        if not crossed:
            return
        self._fill(order, order.remaining, touch if placing else order.price, maker=not placing)

    def _take_liquidity(self, order: PaperOrder, quantity: Decimal) -> None:
        book = self._book(order.symbol)
        levels = book.asks if order.side == BUY else book.bids
        price = walk_book(levels, quantity)
        adverse = price * self.config.slippage_percent / HUNDRED
        price = price + adverse if order.side == BUY else price - adverse
        self._fill(order, quantity, price, maker=False)

    def _fill(self, order: PaperOrder, quantity: Decimal, price: Decimal, *, maker: bool) -> None:
        rate = self.config.fees.maker_percent if maker else self.config.fees.taker_percent
        fee = quantity * price * rate / HUNDRED
        order.filled += quantity
        order.cost += quantity * price
        order.fee += fee
        if order.filled >= order.amount:
            order.status = CLOSED
        self._book_fill(order, quantity, price, fee)
        fill = TradeFill(f"paper-t{next(self._fill_ids)}", order.id, order.client_order_id,
                         order.symbol, order.side, quantity, price, fee, timezone.now())
        self.fills.append(fill)
        self._publish("trade", fill)
        self._publish("order", self._snapshot(order))
        self._publish("position", self._position_view(order.symbol))

    def _book_fill(self, order: PaperOrder, quantity: Decimal, price: Decimal, fee: Decimal
                   ) -> None:
        """Move the paper position and cash: realised PnL on the reduced part, fee paid."""
        settle = settle_currency(order.symbol)
        self.cash[settle] = self.cash.get(settle, ZERO) - fee
        position = self.positions.setdefault(order.symbol, PaperPosition())
        signed = quantity if order.side == BUY else -quantity
        if position.size and (position.size > 0) != (signed > 0):
            closing = min(abs(signed), abs(position.size))
            direction = 1 if position.size > 0 else -1
            self.cash[settle] += closing * (price - position.entry_price) * direction
            position.size += closing if position.size < 0 else -closing
            signed += -closing if signed > 0 else closing
            if position.size == 0:
                position.entry_price = ZERO
        if signed and not order.reduce_only:
            total = position.size + signed
            position.entry_price = (abs(position.size) * position.entry_price
                                    + abs(signed) * price) / abs(total)
            if not position.size:
                position.opened_at = timezone.now()
            position.size = total

    def _match(self, symbol: str | None = None) -> None:
        for order in list(self.orders.values()):
            if order.status == OPEN and (symbol is None or order.symbol == symbol):
                self._try_fill(order)

    def _snapshot(self, order: PaperOrder) -> OrderSnapshot:
        return order.snapshot(settle_currency(order.symbol))

    def fetch_order(self, order_id: str, symbol: str) -> OrderSnapshot:
        with self._lock:
            self._enter("fetch")
            order = self.orders.get(order_id)
            if order is None:
                raise OrderNotFound(f"order {order_id} does not exist", code="110001")
            self._try_fill(order)
            return self._snapshot(order)

    def find_order(self, client_order_id: str, symbol: str) -> OrderSnapshot | None:
        with self._lock:
            self._enter("find")
            order_id = self._by_client_id.get(client_order_id)
            if order_id is None or self._take_fault("find", ("not_listed",)):
                return None
            order = self.orders[order_id]
            self._try_fill(order)
            return self._snapshot(order)

    def cancel_order(self, order_id: str, symbol: str) -> None:
        with self._lock:
            self._enter("cancel")
            order = self.orders.get(order_id)
            if order is not None and order.status == OPEN:
                self._try_fill(order)
                late = self._take_fault("cancel", ("fill_on_cancel",))
                if late:
                    part = self.amount_to_precision(order.symbol, order.remaining * late.ratio)
                    if part > 0:
                        self._take_liquidity(order, part)
            if order is None or order.status != OPEN:
                raise OrderNotFound("order not exists or too late to cancel", code="110001")
            order.status = CANCELED
            self._publish("order", self._snapshot(order))
            self._after("cancel")

    def fetch_orders(self, symbol: str, *, since: datetime | None = None) -> list[OrderSnapshot]:
        with self._lock:
            self._enter("orders")
            self._match(symbol)
            return [self._snapshot(order) for order in self.orders.values()
                    if order.symbol == symbol and (since is None or order.created_at >= since)]

    # --- market data, balance, positions --------------------------------------------

    def fetch_ticker(self, symbol: str) -> Ticker:
        with self._lock:
            self._enter("ticker")
            self._match(symbol)
            return self.current_ticker(symbol)

    def fetch_tickers(self, symbols: list[str]) -> dict[str, Ticker]:
        """One call for every symbol, like a real exchange's batched tickers."""
        with self._lock:
            self._enter("ticker")
            for symbol in symbols:
                self._match(symbol)
            return {symbol: self.current_ticker(symbol) for symbol in symbols}

    def fetch_my_trades(self, symbol: str, *, since: datetime | None = None,
                        limit: int = 100) -> list[TradeFill]:
        with self._lock:
            self._enter("trades")
            rows = [f for f in self.fills if f.symbol == symbol
                    and (since is None or (f.timestamp and f.timestamp >= since))]
            return rows[-limit:]

    def fetch_order_book(self, symbol: str, depth: int = 25) -> OrderBook:
        with self._lock:
            self._enter("book")
            self._match(symbol)
            return self._book(symbol, depth)

    def fetch_candles(self, symbol: str, timeframe: str, *, since: datetime | None = None,
                      limit: int = 100) -> list[Ohlcv]:
        with self._lock:
            self._enter("candles")
            try:
                bars = self._feed(symbol).candles(timeframe, timezone.now(), limit)
            except ValueError as exc:
                raise RejectedError(str(exc), code="10001") from exc
            return [Ohlcv(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars
                    if since is None or b.open_time >= since]

    def _used(self, currency: str) -> Decimal:
        used = ZERO
        for symbol, position in self.positions.items():
            if position.size and settle_currency(symbol) == currency:
                used += abs(position.size) * position.entry_price / self.config.leverage
        for order in self.orders.values():
            if order.status == OPEN and not order.reduce_only and (
                    settle_currency(order.symbol) == currency):
                price = order.price or self._mid(order.symbol)
                used += order.remaining * price / self.config.leverage
        return used

    def _free(self, currency: str) -> Decimal:
        return self.cash.get(currency, ZERO) - self._used(currency)

    def fetch_balance(self) -> dict[str, BalanceLine]:
        with self._lock:
            self._enter("balance")
            self._match()
            return {c: BalanceLine(c, total - self._used(c), self._used(c), total)
                    for c, total in self.cash.items()}

    def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]:
        with self._lock:
            self._enter("positions")
            self._match()
            return [self._position_view(symbol) for symbol, position
                    in sorted(self.positions.items())
                    if position.size and (not symbols or symbol in symbols)]

    # --- test helpers ----------------------------------------------------------------

    def orders_with_client_id(self, client_order_id: str) -> list[PaperOrder]:
        """Every order the exchange holds under this client id (at most one, by design)."""
        with self._lock:
            return [o for o in self.orders.values() if o.client_order_id == client_order_id]


_registry: dict[int, tuple[str, PaperExchange]] = {}
_registry_lock = threading.Lock()


def paper_exchange_for(account: Any) -> PaperExchange:
    """The process's paper exchange of ``account``; a changed ``paper_config`` is re-applied."""
    fingerprint = json.dumps(account.paper_config or {}, sort_keys=True, default=str)
    with _registry_lock:
        entry = _registry.get(account.pk)
        if entry is None:
            exchange = PaperExchange(parse_paper_config(account.paper_config),
                                     quote_currency=account.quote_currency,
                                     starting_capital=account.starting_capital)
            _registry[account.pk] = (fingerprint, exchange)
            return exchange
        old_fingerprint, exchange = entry
        if old_fingerprint != fingerprint:
            exchange.configure(parse_paper_config(account.paper_config))
            _registry[account.pk] = (fingerprint, exchange)
        return exchange


def paper_exchanges() -> list[PaperExchange]:
    """Every paper exchange of this process."""
    with _registry_lock:
        return [exchange for _, exchange in _registry.values()]


def reset_paper_exchanges() -> None:
    """Forget every paper exchange of this process (tests; a fresh demo)."""
    with _registry_lock:
        _registry.clear()
