"""The ccxt adapter: any ccxt exchange id, Bybit first.

Every ccxt call goes through ``_call``, which translates ccxt's errors into ours
where they are raised (``translate_error``). Per-exchange differences are data
(``PROFILES``), not branches: Bybit's client-id lookup parameter, its account
options and the retCodes whose ccxt class is misleading (110072 "OrderLinkedID is
duplicate" comes as ``InvalidOrder`` but means the order exists; 10016 "System
error" comes as a plain ``ExchangeError`` but is transient).

One ccxt client per account configuration and thread (a sync ccxt client and its
HTTP session are not meant to be shared between threads); markets are loaded once
per process for each exchange/URL/market type and handed to every new client. Credentials come only from the
environment variables named on the account and are never logged.
"""

from __future__ import annotations

import decimal
import hashlib
import re
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import ccxt
from django.conf import settings

from execution.exchanges.base import (
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

T = TypeVar("T")


@dataclass(frozen=True)
class ExchangeProfile:
    """What differs between exchanges, as data."""

    options: dict[str, Any] = field(default_factory=dict)
    # How the market type chosen on the account reaches ccxt's options.
    market_type_options: Callable[[str], dict[str, Any]] = (
        lambda market_type: {"defaultType": {"linear": "swap"}.get(market_type, market_type)})
    # Parameters that restrict an order listing to one client order id.
    client_id_params: Callable[[str], dict[str, Any]] = (
        lambda cid: {"clientOrderId": cid})
    fetch_order_params: dict[str, Any] = field(default_factory=dict)
    # Listings searched for a client order id, in order (open orders first); also the
    # listings of every order of a symbol (``fetch_orders``).
    lookup_methods: tuple[str, ...] = ("fetch_open_orders", "fetch_closed_orders")
    # Parameters of a full listing: every page, not the exchange's first 20 or 50 rows.
    listing_params: dict[str, Any] = field(default_factory=lambda: {"paginate": True,
                                                                    "paginationCalls": 200})
    # Exchange error codes whose ccxt class misleads: code → our class.
    error_codes: dict[str, type[ExchangeError]] = field(default_factory=dict)
    # The websocket URLs (ccxt's ``urls['api']['ws']``) under a replaced API base URL;
    # ``None``: unknown, so an account with ``api_base_url`` gets no stream (its
    # credentials must not go to the exchange's own hosts).
    ws_urls: Callable[[str], dict[str, Any]] | None = None
    # The private websocket must authenticate before it is usable (``open`` waits for it).
    ws_authenticates: bool = False


def bybit_ws_urls(base: str) -> dict[str, Any]:
    """Bybit v5's websocket URLs on the host of ``base`` (http → ws, https → wss)."""
    root = "ws" + base[len("http"):] if base.startswith("http") else base
    private = f"{root}/v5/private"
    return {"public": {kind: f"{root}/v5/public/{kind}"
                       for kind in ("spot", "linear", "inverse", "option")},
            "private": {"spot": {"unified": private, "nonUnified": private},
                        "contract": private, "usdc": private, "trade": f"{root}/v5/trade"}}


PROFILES: dict[str, ExchangeProfile] = {
    "bybit": ExchangeProfile(
        options={"enableUnifiedAccount": True, "enableUnifiedMargin": False},
        market_type_options=lambda market_type: {"fetchMarkets": {"types": [market_type]},
                                                 "defaultType": "swap"
                                                 if market_type in ("linear", "inverse")
                                                 else market_type},
        client_id_params=lambda cid: {"orderLinkId": cid},
        fetch_order_params={"acknowledged": True},
        # fetch_closed_orders asks Bybit for orderStatus=Filled only; a cancelled or
        # partially filled order must be found too.
        lookup_methods=("fetch_open_orders", "fetch_canceled_and_closed_orders"),
        error_codes={
            "110072": DuplicateOrderError,  # "OrderLinkedID is duplicate" (ccxt: InvalidOrder)
            "10016": TransientError,  # "System error. Please try again later." (ccxt: ExchangeError)
            "10006": RateLimitedError,
            "110001": OrderNotFound,  # "order not exists or too late to cancel"
            "110007": InsufficientFundsError,
            "10003": FatalError,  # invalid api key
            "10004": FatalError,  # invalid signature
            "10005": FatalError,  # permission denied
        },
        ws_urls=bybit_ws_urls,
        ws_authenticates=True,
    ),
}
DEFAULT_PROFILE = ExchangeProfile()

# ccxt class → ours, most specific first (isinstance order matters).
_CCXT_TRANSLATION: list[tuple[type[Exception], type[ExchangeError]]] = [
    (ccxt.OrderNotFound, OrderNotFound),
    (ccxt.DuplicateOrderId, DuplicateOrderError),
    (ccxt.InsufficientFunds, InsufficientFundsError),
    (ccxt.InvalidOrder, InvalidOrderError),
    (ccxt.AuthenticationError, FatalError),
    (ccxt.PermissionDenied, FatalError),
    (ccxt.AccountSuspended, FatalError),
    (ccxt.NotSupported, FatalError),
    (ccxt.ArgumentsRequired, FatalError),
    (ccxt.RateLimitExceeded, RateLimitedError),
    (ccxt.DDoSProtection, RateLimitedError),
    (ccxt.NetworkError, TransientError),
    (ccxt.BadSymbol, RejectedError),
    (ccxt.BadRequest, RejectedError),
    (ccxt.OperationRejected, RejectedError),
    (ccxt.ExchangeError, RejectedError),
]
_RET_CODE = re.compile(r'"(?:retCode|ret_code|code)"\s*:\s*"?(-?\d+)')


def exchange_code(message: str) -> str | None:
    """The exchange's own error code inside a ccxt message (Bybit: ``"retCode":110072``)."""
    match = _RET_CODE.search(message)
    return match.group(1) if match else None


def translate_error(exc: Exception, profile: ExchangeProfile = DEFAULT_PROFILE) -> ExchangeError:
    """Our error for ``exc``: the exchange's code first, then ccxt's class.

    Anything ccxt raises that is not one of its own errors means we do not know
    what happened (a parser failure after the request went out): transient.
    """
    message = str(exc) or type(exc).__name__
    code = exchange_code(message)
    if code and code in profile.error_codes:
        return profile.error_codes[code](message, code=code)
    for ccxt_class, ours in _CCXT_TRANSLATION:
        if isinstance(exc, ccxt_class):
            return ours(message, code=code or type(exc).__name__)
    if isinstance(exc, ccxt.BaseError):
        return FatalError(message, code=code or type(exc).__name__)
    return TransientError(f"unexpected {type(exc).__name__}: {message}", code="unexpected")


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _ms_to_datetime(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC) if ms else None


def snapshot_from_ccxt(raw: dict[str, Any], request: OrderRequest | None = None
                       ) -> OrderSnapshot:
    """Our ``OrderSnapshot`` from a ccxt order (REST or websocket)."""
    fee = raw.get("fee") or {}
    filled = _dec(raw.get("filled")) or Decimal("0")
    average = _dec(raw.get("average"))
    cost = _dec(raw.get("cost"))
    if average is None and cost and filled:
        average = cost / filled
    return OrderSnapshot(
        id=str(raw.get("id") or ""),
        client_order_id=raw.get("clientOrderId") or (request.client_order_id
                                                     if request else ""),
        symbol=raw.get("symbol") or (request.symbol if request else ""),
        side=raw.get("side") or (request.side if request else ""),
        order_type=raw.get("type") or (request.order_type if request else ""),
        status=raw.get("status"),
        amount=_dec(raw.get("amount")) or (request.amount if request else None),
        filled=filled, average=average, price=_dec(raw.get("price")),
        fee=_dec(fee.get("cost")) or Decimal("0"), fee_currency=fee.get("currency") or "",
        timestamp=_ms_to_datetime(raw.get("timestamp")))


def ticker_from_ccxt(raw: dict[str, Any], symbol: str = "") -> Ticker:
    """Our ``Ticker`` from a ccxt ticker (REST or websocket)."""
    return Ticker(raw.get("symbol") or symbol, _dec(raw.get("bid")), _dec(raw.get("ask")),
                  _dec(raw.get("last")), _ms_to_datetime(raw.get("timestamp")),
                  mark=_dec(raw.get("markPrice")))


def trade_from_ccxt(raw: dict[str, Any]) -> TradeFill:
    """Our ``TradeFill`` from a ccxt trade of the account (``fetch_my_trades``, ``watch_my_trades``)."""
    fee = raw.get("fee") or {}
    info = raw.get("info") or {}
    return TradeFill(
        id=str(raw.get("id") or ""), order_id=str(raw.get("order") or ""),
        client_order_id=str(raw.get("clientOrderId") or info.get("orderLinkId") or ""),
        symbol=raw.get("symbol") or "", side=raw.get("side") or "",
        amount=_dec(raw.get("amount")) or Decimal("0"), price=_dec(raw.get("price"))
        or Decimal("0"), fee=_dec(fee.get("cost")) or Decimal("0"),
        timestamp=_ms_to_datetime(raw.get("timestamp")))


def position_from_ccxt(raw: dict[str, Any], contracts: Decimal) -> ExchangePosition:
    """Our ``ExchangePosition`` from a ccxt position with ``contracts`` held."""
    return ExchangePosition(raw["symbol"], raw.get("side") or "", contracts,
                            _dec(raw.get("entryPrice")), _dec(raw.get("markPrice")),
                            _dec(raw.get("unrealizedPnl")),
                            opened_at=_ms_to_datetime(raw.get("timestamp")))


@dataclass(frozen=True)
class CcxtSettings:
    """Everything needed to build a client; the credentials never leave this object."""

    account_id: int | None
    exchange_id: str
    testnet: bool = False
    api_base_url: str = ""
    market_type: str = "linear"
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    timeout_ms: int = 10000
    enable_rate_limit: bool = True

    @classmethod
    def from_account(cls, account: Any, *, timeout_ms: int | None = None,
                     enable_rate_limit: bool | None = None) -> CcxtSettings:
        """The account's client settings; ``FatalError`` when its credentials could leak."""
        if errors := account.routing_errors():
            raise FatalError(f"account {account.name}: {'; '.join(errors)}", code="config")
        return cls(
            account_id=account.pk, exchange_id=account.exchange_id, testnet=account.testnet,
            api_base_url=account.api_base_url.rstrip("/"), market_type=account.market_type,
            credentials=account.credentials(),
            timeout_ms=timeout_ms or settings.EXCHANGE_TIMEOUT_MS,
            enable_rate_limit=(settings.EXCHANGE_ENABLE_RATE_LIMIT
                               if enable_rate_limit is None else enable_rate_limit))

    @property
    def markets_key(self) -> tuple:
        return (self.exchange_id, self.testnet, self.api_base_url, self.market_type)

    @property
    def client_key(self) -> tuple:
        secret_digest = hashlib.sha256(
            repr(sorted(self.credentials.items())).encode()).hexdigest()
        return (*self.markets_key, self.account_id, self.timeout_ms, self.enable_rate_limit,
                secret_digest)


_clients: dict[tuple, Any] = {}
_markets: dict[tuple, tuple[dict, dict | None]] = {}
_cache_lock = threading.Lock()


def build_client(cfg: CcxtSettings, *, module: Any = ccxt, options: dict | None = None) -> Any:
    """A configured ccxt client (markets not loaded); ``module=ccxt.pro`` for a stream client.

    With ``api_base_url`` every REST URL goes there, and a websocket client's URLs go
    to the same host (the profile's ``ws_urls``) or the client is refused.
    """
    try:
        client_class = getattr(module, cfg.exchange_id)
    except AttributeError:
        raise FatalError(f"unknown ccxt exchange id {cfg.exchange_id!r}", code="config") from None
    profile = PROFILES.get(cfg.exchange_id, DEFAULT_PROFILE)
    options = {**profile.options, **profile.market_type_options(cfg.market_type),
               **(options or {})}
    client = client_class({**cfg.credentials, "timeout": cfg.timeout_ms,
                           "enableRateLimit": cfg.enable_rate_limit, "options": options})
    if cfg.testnet:
        try:
            client.set_sandbox_mode(True)
        except ccxt.NotSupported as exc:
            raise FatalError(f"{cfg.exchange_id} has no testnet in ccxt", code="config") from exc
    if cfg.api_base_url:
        has_ws = "ws" in client.urls["api"]
        client.urls["api"] = {key: cfg.api_base_url for key in client.urls["api"] if key != "ws"}
        if has_ws:
            if profile.ws_urls is None:
                raise FatalError(f"{cfg.exchange_id}: websocket URLs under api_base_url "
                                 "unknown: no stream", code="config")
            client.urls["api"]["ws"] = profile.ws_urls(cfg.api_base_url)
    return client


def cached_markets(cfg: CcxtSettings) -> tuple[dict, dict | None] | None:
    """The markets (and currencies) loaded for this configuration in this process, if any."""
    return _markets.get(cfg.markets_key)


def reset_ccxt_clients() -> None:
    """Forget cached clients and markets (tests; after a credentials change)."""
    with _cache_lock:
        _clients.clear()
        _markets.clear()


class CcxtExchange(Exchange):
    """An ``Exchange`` backed by a ccxt client."""

    def __init__(self, cfg: CcxtSettings, client: Any | None = None):
        self.cfg = cfg
        self.name = cfg.exchange_id
        self.profile = PROFILES.get(cfg.exchange_id, DEFAULT_PROFILE)
        self.client = client or self._cached_client()

    @classmethod
    def from_account(cls, account: Any, **kwargs: Any) -> CcxtExchange:
        return cls(CcxtSettings.from_account(account, **kwargs))

    def _cached_client(self) -> Any:
        key = (*self.cfg.client_key, threading.get_ident())
        with _cache_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = build_client(self.cfg)
        return client

    @contextmanager
    def _translated(self):
        """Translate ccxt's errors; keep ccxt's changes to the decimal context inside the call.

        ccxt's precision helpers set the thread's decimal context to ROUND_HALF_UP and
        trap Underflow; left alone, that would change how every later Decimal of the
        worker rounds (a 42.5 health score printed as 43 after the first order).
        """
        try:
            with decimal.localcontext():
                yield
        except ExchangeError:
            raise
        except Exception as exc:
            raise translate_error(exc, self.profile) from exc

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._ensure_markets()
        with self._translated():
            return getattr(self.client, method)(*args, **kwargs)

    def _ensure_markets(self) -> None:
        if self.client.markets:
            return
        key = self.cfg.markets_key
        cached = _markets.get(key)
        with self._translated():
            if cached:
                self.client.set_markets(cached[0], cached[1])
                return
            self.client.load_markets()
        with _cache_lock:
            _markets[key] = (self.client.markets, self.client.currencies)

    # --- orders ----------------------------------------------------------------------

    def _snapshot(self, raw: dict[str, Any], request: OrderRequest | None = None
                  ) -> OrderSnapshot:
        return snapshot_from_ccxt(raw, request)

    def place_order(self, request: OrderRequest) -> OrderSnapshot:
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        raw = self._call("create_order", request.symbol, request.order_type, request.side,
                         float(request.amount),
                         float(request.price) if request.price is not None else None, params)
        return self._snapshot(raw, request)

    def fetch_order(self, order_id: str, symbol: str) -> OrderSnapshot:
        return self._snapshot(self._call("fetch_order", order_id, symbol,
                                         dict(self.profile.fetch_order_params)))

    def find_order(self, client_order_id: str, symbol: str) -> OrderSnapshot | None:
        params = self.profile.client_id_params(client_order_id)
        for method in self.profile.lookup_methods:
            for raw in self._call(method, symbol, None, None, dict(params)):
                if raw.get("clientOrderId") == client_order_id:
                    return self._snapshot(raw)
        return None

    def cancel_order(self, order_id: str, symbol: str) -> None:
        self._call("cancel_order", order_id, symbol)

    def fetch_orders(self, symbol: str, *, since: datetime | None = None) -> list[OrderSnapshot]:
        """Open orders, then the history: an order that ended between the two listings is
        in both, and the later answer (the history's) is kept."""
        since_ms = int(since.timestamp() * 1000) if since else None
        listed: dict[str, OrderSnapshot] = {}
        for method in self.profile.lookup_methods:
            for raw in self._call(method, symbol, since_ms, None,
                                  dict(self.profile.listing_params)):
                snapshot = self._snapshot(raw)
                if since is None or snapshot.timestamp is None or snapshot.timestamp >= since:
                    listed[snapshot.id] = snapshot
        return list(listed.values())

    # --- market data, balance, positions ---------------------------------------------

    def fetch_ticker(self, symbol: str) -> Ticker:
        return ticker_from_ccxt(self._call("fetch_ticker", symbol), symbol)

    def fetch_tickers(self, symbols: list[str]) -> dict[str, Ticker]:
        """One request for every symbol (the account's rate limit is paid once)."""
        if not symbols:
            return {}
        raw = self._call("fetch_tickers", list(symbols))
        return {symbol: ticker_from_ccxt(raw[symbol], symbol) for symbol in symbols
                if symbol in raw}

    def fetch_my_trades(self, symbol: str, *, since: datetime | None = None,
                        limit: int = 100) -> list[TradeFill]:
        since_ms = int(since.timestamp() * 1000) if since else None
        return sorted((trade_from_ccxt(raw) for raw in self._call("fetch_my_trades", symbol,
                                                                     since_ms, limit)),
                      key=lambda t: (t.timestamp is None, t.timestamp, t.id))

    def fetch_order_book(self, symbol: str, depth: int = 25) -> OrderBook:
        raw = self._call("fetch_order_book", symbol, depth)
        return OrderBook(symbol, [(_dec(p), _dec(q)) for p, q, *_ in raw.get("bids", [])],
                         [(_dec(p), _dec(q)) for p, q, *_ in raw.get("asks", [])],
                         _ms_to_datetime(raw.get("timestamp")))

    def fetch_candles(self, symbol: str, timeframe: str, *, since: datetime | None = None,
                      limit: int = 100) -> list[Ohlcv]:
        since_ms = int(since.timestamp() * 1000) if since else None
        rows = self._call("fetch_ohlcv", symbol, timeframe, since_ms, limit)
        return [Ohlcv(_ms_to_datetime(t), _dec(o), _dec(h), _dec(lo), _dec(c), _dec(v) or
                      Decimal("0")) for t, o, h, lo, c, v in rows]

    def fetch_balance(self) -> dict[str, BalanceLine]:
        raw = self._call("fetch_balance")
        out = {}
        for currency, total in (raw.get("total") or {}).items():
            if total is None:
                continue
            out[currency] = BalanceLine(currency, _dec(raw["free"].get(currency)) or Decimal(0),
                                        _dec(raw["used"].get(currency)) or Decimal(0),
                                        _dec(total))
        return out

    def fetch_positions(self, symbols: list[str] | None = None) -> list[ExchangePosition]:
        out = []
        for raw in self._call("fetch_positions", symbols):
            contracts = _dec(raw.get("contracts")) or Decimal("0")
            if not contracts:
                continue
            out.append(position_from_ccxt(raw, contracts))
        return out

    # --- precision -----------------------------------------------------------------

    def market_rules(self, symbol: str) -> MarketRules:
        self._ensure_markets()
        with self._translated():
            market = self.client.market(symbol)
        precision, limits = market.get("precision", {}), market.get("limits", {})

        def step(value: Any) -> Decimal | None:
            if value is None:
                return None
            if self.client.precisionMode == ccxt.DECIMAL_PLACES:
                return Decimal(1).scaleb(-int(value))
            return _dec(value)

        return MarketRules(symbol, step(precision.get("amount")), step(precision.get("price")),
                           _dec((limits.get("amount") or {}).get("min")),
                           _dec((limits.get("cost") or {}).get("min")))

    def amount_to_precision(self, symbol: str, amount: Decimal) -> Decimal:
        self._ensure_markets()
        with self._translated():
            return Decimal(self.client.amount_to_precision(symbol, str(amount)))

    def price_to_precision(self, symbol: str, price: Decimal) -> Decimal:
        self._ensure_markets()
        with self._translated():
            return Decimal(self.client.price_to_precision(symbol, str(price)))
