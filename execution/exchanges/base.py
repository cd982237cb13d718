"""The one exchange interface the pipeline talks to, and the shapes it returns.

Two implementations: ``CcxtExchange`` (any ccxt exchange id, Bybit first) and
``PaperExchange`` (the in-process simulator). Both raise only the errors of
``execution.exchanges.errors`` and speak ``Decimal`` for every price and quantity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

BUY, SELL = "buy", "sell"

# Unified order statuses (ccxt's vocabulary); ``None`` means the exchange did not say.
OPEN, CLOSED, CANCELED, REJECTED, EXPIRED = "open", "closed", "canceled", "rejected", "expired"
FINAL_STATUSES = frozenset({CLOSED, CANCELED, REJECTED, EXPIRED})


@dataclass(frozen=True)
class OrderRequest:
    """An order to place; ``client_order_id`` is chosen by us before the first attempt."""

    symbol: str
    side: str
    order_type: str
    amount: Decimal
    client_order_id: str
    price: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class OrderSnapshot:
    """What the exchange says about one order at one moment."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    status: str | None
    amount: Decimal | None
    filled: Decimal = Decimal("0")
    average: Decimal | None = None
    price: Decimal | None = None
    fee: Decimal = Decimal("0")
    fee_currency: str = ""
    timestamp: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Ticker:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    timestamp: datetime | None = None
    mark: Decimal | None = None  # the exchange's mark price (derivatives), when it says

    @property
    def mid(self) -> Decimal | None:
        if self.bid and self.ask:
            return (self.bid + self.ask) / 2
        return self.last

    @property
    def mark_price(self) -> Decimal | None:
        """What an open position is valued at: the exchange's mark, else the mid, else last."""
        price = self.mark or self.mid
        return price if price is not None and price > 0 else None


@dataclass(frozen=True)
class TradeFill:
    """One execution of one of the account's orders, as the exchange lists it."""

    id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal
    fee: Decimal = Decimal("0")
    timestamp: datetime | None = None


@dataclass(frozen=True)
class OrderBook:
    """Price levels ``(price, quantity)``, best first on each side."""

    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    timestamp: datetime | None = None

    def top(self) -> BookTop:
        bid = self.bids[0] if self.bids else (None, None)
        ask = self.asks[0] if self.asks else (None, None)
        return BookTop(self.symbol, bid[0], bid[1], ask[0], ask[1])


@dataclass(frozen=True)
class BookTop:
    symbol: str
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None


@dataclass(frozen=True)
class Ohlcv:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class BalanceLine:
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True)
class ExchangePosition:
    symbol: str
    side: str  # "long" / "short"
    quantity: Decimal
    entry_price: Decimal | None
    mark_price: Decimal | None = None
    unrealised_pnl: Decimal | None = None
    opened_at: datetime | None = None  # when the exchange says the position was opened

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side == "long" else -self.quantity


@dataclass(frozen=True)
class MarketRules:
    """Precision and size limits of one market."""

    symbol: str
    amount_step: Decimal | None
    price_step: Decimal | None
    min_amount: Decimal | None = None
    min_cost: Decimal | None = None
    extra: dict = field(default_factory=dict)


def round_to_step(value: Decimal, step: Decimal | None, rounding: str) -> Decimal:
    """``value`` on a multiple of ``step`` (unchanged without a step)."""
    if not step:
        return value
    return (value / step).to_integral_value(rounding=rounding) * step


class Exchange(ABC):
    """Place, look up, list and cancel orders; read market data, balances and positions."""

    name: str = "exchange"

    @abstractmethod
    def place_order(self, request: OrderRequest) -> OrderSnapshot:
        """Send a new order. ``TransientError`` means the outcome is unknown."""

    @abstractmethod
    def fetch_order(self, order_id: str, symbol: str) -> OrderSnapshot:
        """The order with this exchange id (``OrderNotFound`` if unknown)."""

    @abstractmethod
    def find_order(self, client_order_id: str, symbol: str) -> OrderSnapshot | None:
        """The order with this client order id, open or not; ``None`` if it does not exist."""

    @abstractmethod
    def cancel_order(self, order_id: str, symbol: str) -> None:
        """Ask to cancel; ``OrderNotFound`` when the order is already final or unknown."""

    @abstractmethod
    def fetch_orders(self, symbol: str, *, since: datetime | None = None) -> list[OrderSnapshot]:
        """Every order the exchange lists for ``symbol``, open and final, created at or after
        ``since`` (all it keeps without). Read by the invariant checks: each client order id
        at most once, fills per order against the database."""

    @abstractmethod
    def fetch_ticker(self, symbol: str) -> Ticker: ...

    def fetch_tickers(self, symbols: list[str]) -> dict[str, Ticker]:
        """Tickers of several symbols; exchanges that can answer in one request override this."""
        return {symbol: self.fetch_ticker(symbol) for symbol in symbols}

    def fetch_my_trades(self, symbol: str, *, since: datetime | None = None,
                        limit: int = 100) -> list[TradeFill]:
        """The account's executions in ``symbol`` since ``since``, oldest first."""
        raise NotImplementedError(f"{self.name} does not list the account's trades")

    @abstractmethod
    def fetch_order_book(self, symbol: str, depth: int = 25) -> OrderBook: ...

    @abstractmethod
    def fetch_candles(self, symbol: str, timeframe: str, *, since: datetime | None = None,
                      limit: int = 100) -> list[Ohlcv]:
        """Recent candles, oldest first; the last one may still be forming (ccxt)."""

    @abstractmethod
    def fetch_balance(self) -> dict[str, BalanceLine]: ...

    @abstractmethod
    def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]: ...

    @abstractmethod
    def market_rules(self, symbol: str) -> MarketRules: ...

    def fetch_book_top(self, symbol: str) -> BookTop:
        return self.fetch_order_book(symbol, depth=1).top()

    def amount_to_precision(self, symbol: str, amount: Decimal) -> Decimal:
        """Quantity truncated to the market's step (never rounded up)."""
        return round_to_step(Decimal(amount), self.market_rules(symbol).amount_step, ROUND_DOWN)

    def price_to_precision(self, symbol: str, price: Decimal) -> Decimal:
        return round_to_step(Decimal(price), self.market_rules(symbol).price_step, ROUND_HALF_UP)

    def min_order_amount(self, symbol: str) -> Decimal | None:
        return self.market_rules(symbol).min_amount
