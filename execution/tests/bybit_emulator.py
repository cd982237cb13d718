"""A local HTTP emulator of the Bybit v5 endpoints the pipeline uses.

Real ``ccxt.bybit`` is pointed at it (``ExchangeAccount.api_base_url``) by the
contract tests and the execution benchmark. Answers reuse the response shapes
recorded by ccxt (``data/bybit.response.excerpt.json``); private requests must
carry a valid ``X-BAPI-SIGN`` HMAC-SHA256 signature
(``timestamp + apiKey + recvWindow + query-or-body``) or get retCode 10004.

Faults are scripted per path with ``fail_next``: HTTP 500/429, any retCode, a
read timeout (the answer is held back), a dropped connection — before or after
the exchange acted (``*_after_accept``: the order exists, the answer is lost);
``truncated_after_accept`` (a 200 reply whose body is cut off); ``empty`` (a
listing that does not show the order yet, ``times`` lookups in a row); ``delayed``
(the request is processed only after ``hold_seconds``, when the client has given up;
``delayed_processed`` is set then); ``delayed_accept`` (the same, deterministic: the
client times out and the create is processed by the first request ``seconds`` later on
the emulator's clock, which a test may freeze and move). Order behaviour on
``v5/order/create``: ``stay_open`` (accepted, never fills by itself) and
``partial_fill`` (``ratio`` of the quantity fills, the rest stays open); on
``v5/order/cancel``: ``fill_on_cancel`` (``ratio`` of what is left fills just before
the cancel; nothing left: "too late to cancel"). ``match`` restricts a fault to
requests carrying those parameters (``True``: any value).

Orders fill like on the exchange: a market order at the touch, a marketable limit
order at the touch, a resting limit order at its price once ``set_price`` crosses it.
Fills move the account's position per symbol (``v5/position/list``); a reduce-only fill
never opens or flips one (with ``strict_reduce_only`` such an order is refused, 110017,
as Bybit does). Order listings are paged (``limit``, ``cursor``), newest first.

Market data for a trading bot (a dry-run freqtrade runs against it): instruments per
category (linear perpetuals and spot pairs), order books, tickers, klines that honour
``limit``/``start``/``end`` — replayed from a real recorded candle file
(``replay_candles``) on a clock aligned to now, so a bot sees fresh candles — and,
for futures, the risk-limit table, mark/index/premium-index price klines and the
funding-rate history.

The account's executions are listed (``v5/execution/list``); ``fill_order`` fills a
resting order and ``trade_elsewhere`` places and fills an order nobody on the platform
sent (a trade by hand, another bot).

Websockets (Bybit v5, on the same port): ``/v5/public/linear`` (``tickers.<id>``)
and ``/v5/private`` (the ``auth`` op — ``HMAC-SHA256(secret, "GET/realtime" +
expires)`` —, then ``order``, ``execution`` and ``position``); ``ping`` is answered.
Every fill, cancel and price change is pushed to the subscribers. ``drop_streams``
closes every websocket and refuses new ones until ``resume_streams``: what happens
meanwhile is never sent (Bybit has no backfill either).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import InvalidState
from websockets.frames import Opcode
from websockets.server import ServerProtocol

DATA = Path(__file__).resolve().parent / "data"
FEE_RATE = Decimal("0.00055")


def _recorded() -> dict[str, Any]:
    return json.loads((DATA / "bybit.response.excerpt.json").read_text(encoding="utf-8"))


def _instrument(symbol: str, base: str, tick: str, step: str, min_qty: str) -> dict[str, Any]:
    """A linear perpetual as ``v5/market/instruments-info`` lists it."""
    return {
        "symbol": symbol, "contractType": "LinearPerpetual", "status": "Trading",
        "baseCoin": base, "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1584230400000",
        "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(len(tick.split(".")[-1])),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": min_qty, "qtyStep": step,
                          "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000",
                          "minNotionalValue": "5"},
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin_": "USDT",
        "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
    }


INSTRUMENTS = [_instrument("BTCUSDT", "BTC", "0.10", "0.001", "0.001"),
               _instrument("LTCUSDT", "LTC", "0.01", "0.1", "0.1")]


def _spot_instrument(symbol: str, base: str, tick: str, step: str, min_qty: str) -> dict[str, Any]:
    """A spot pair as ``v5/market/instruments-info?category=spot`` lists it."""
    return {
        "symbol": symbol, "baseCoin": base, "quoteCoin": "USDT", "innovation": "0",
        "status": "Trading", "marginTrading": "none", "stTag": "0",
        "lotSizeFilter": {"basePrecision": step, "quotePrecision": "0.00000001",
                          "minOrderQty": min_qty, "maxOrderQty": "1000000",
                          "minOrderAmt": "1", "maxOrderAmt": "2000000"},
        "priceFilter": {"tickSize": tick},
        "riskParameters": {"limitParameter": "0.05", "marketParameter": "0.05"},
    }


SPOT_INSTRUMENTS = [_spot_instrument("BTCUSDT", "BTC", "0.01", "0.000001", "0.000048"),
                    _spot_instrument("XRPUSDT", "XRP", "0.0001", "0.01", "1")]
INSTRUMENTS_BY_CATEGORY = {"linear": INSTRUMENTS, "spot": SPOT_INSTRUMENTS}
# Bybit's kline intervals (minutes, or D/W/M) in milliseconds.
INTERVAL_MS = {**{str(m): m * 60_000 for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
               "D": 86_400_000, "W": 7 * 86_400_000, "M": 30 * 86_400_000}
KLINE_MAX_LIMIT = 1000


class CandleReplay:
    """A recorded candle file replayed on today's clock.

    The candle that opens at ``t`` (aligned to the interval) is the recorded row
    ``(t / interval) mod rows``: the series never ends and every request for the same
    time gets the same candle, so a bot's repeated fetches agree with each other.
    """

    def __init__(self, path: Path):
        with path.open(newline="", encoding="utf-8") as handle:
            self.rows = [(row["open"], row["high"], row["low"], row["close"], row["volume"])
                         for row in csv.DictReader(handle)]
        if not self.rows:
            raise ValueError(f"{path}: no candles")

    def candle(self, open_ms: int, interval_ms: int) -> list[str]:
        o, h, low, c, v = self.rows[(open_ms // interval_ms) % len(self.rows)]
        return [str(open_ms), o, h, low, c, v, str(Decimal(v) * Decimal(c))]

    def close_at(self, at_ms: int, interval_ms: int = 300_000) -> Decimal:
        return Decimal(self.candle(at_ms - at_ms % interval_ms, interval_ms)[4])

    def window(self, params: dict[str, Any], now_ms: int) -> list[list[str]]:
        """What ``v5/market/kline`` answers: newest first, within start/end, at most limit."""
        interval = INTERVAL_MS.get(str(params.get("interval", "5")), 300_000)
        limit = max(1, min(int(params.get("limit", 200)), KLINE_MAX_LIMIT))
        last = min(int(params.get("end", now_ms)), now_ms)
        last -= last % interval
        if params.get("start") is not None:
            first = int(params["start"])
            first += -first % interval
            opens = list(range(first, last + 1, interval))[:limit]
        else:
            opens = list(range(last - (limit - 1) * interval, last + 1, interval))
        return [self.candle(t, interval) for t in reversed(opens)]


@dataclass
class Fault:
    path: str
    kind: str  # http500 | http429 | retcode | timeout | drop | empty | delayed
    #            | delayed_accept | truncated_after_accept | <kind>_after_accept
    #            | stay_open | partial_fill | fill_on_cancel
    code: int = 0
    message: str = ""
    times: int = 1
    ratio: Decimal = Decimal("0.5")
    seconds: float = 5.0
    match: dict[str, Any] | None = None

    def applies_to(self, params: dict[str, Any]) -> bool:
        return all((name in params) if wanted is True else params.get(name) == wanted
                   for name, wanted in (self.match or {}).items())


# Faults that change what the exchange does with the order, not the answer.
BEHAVIOUR_KINDS = ("stay_open", "partial_fill", "fill_on_cancel")
OPEN_STATUSES = ("New", "PartiallyFilled")
PAGE_DEFAULT, PAGE_MAX = 20, 50


@dataclass
class EmulatorState:
    prices: dict[str, Decimal] = field(default_factory=lambda: {"BTCUSDT": Decimal("50000"),
                                                                 "LTCUSDT": Decimal("70")})
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_link_id: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fill_market_orders: bool = True
    strict_reduce_only: bool = False
    # symbol → (signed size, average entry price); long > 0
    positions: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    # creates processed later (delayed_accept): (due, epoch seconds; params)
    delayed: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    frozen: set[str] = field(default_factory=set)  # orders that never fill by themselves
    faults_held: bool = False
    candles: dict[str, CandleReplay] = field(default_factory=dict)
    opened_ms: dict[str, int] = field(default_factory=dict)  # symbol → when its position opened
    executions: list[dict[str, Any]] = field(default_factory=list)


class _Socket:
    """One websocket connection (sans-I/O protocol over the handler's socket)."""

    def __init__(self, sock: socket.socket, protocol: ServerProtocol, kind: str):
        self.sock, self.protocol, self.kind = sock, protocol, kind
        self.topics: set[str] = set()
        self.authenticated = False
        self.lock = threading.Lock()
        self.conn_id = uuid.uuid4().hex[:20]

    def flush(self) -> None:
        with self.lock:
            data = b"".join(self.protocol.data_to_send())
            if data:
                self.sock.sendall(data)

    def send(self, message: dict[str, Any]) -> None:
        try:
            with self.lock:
                self.protocol.send_text(json.dumps(message).encode())
                self.sock.sendall(b"".join(self.protocol.data_to_send()))
        except (OSError, InvalidState):
            pass  # the client went away; its handler thread ends the connection

    def drop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class BybitEmulator:
    """Start with ``start()`` (port 0: any free port), point ccxt at ``base_url``."""

    # Emulators serving now (the suite's invariant check holds their faults while it reads).
    running: ClassVar[weakref.WeakSet[BybitEmulator]] = weakref.WeakSet()

    def __init__(self, *, api_key: str = "emulator-key", api_secret: str = "emulator-secret",
                 host: str = "127.0.0.1", port: int = 0, record_requests: bool = True,
                 hold_seconds: float = 1.0, latency_ms: float = 0.0):
        self.api_key, self.api_secret = api_key, api_secret
        self.latency_ms = latency_ms  # added to every answer, like a network round trip
        self.hold_seconds = hold_seconds  # a held-back ("timeout") answer is dropped after this
        self.state = EmulatorState()
        self.record_requests = record_requests
        self._recorded = _recorded()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._order_created = threading.Condition()  # tests wait on it for a placement
        self._release = threading.Event()
        self.delayed_processed = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._sockets: list[_Socket] = []
        self.streams_down = False
        self.ws_messages: list[dict[str, Any]] = []  # what clients sent over websockets

    # --- lifecycle --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> BybitEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="bybit-emulator")
        self._thread.start()
        BybitEmulator.running.add(self)
        return self

    def stop(self) -> None:
        BybitEmulator.running.discard(self)
        self._release.set()
        self.drop_streams()
        self._server.shutdown()
        self._server.server_close()

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http"):]

    def __enter__(self) -> BybitEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ----------------------------------------------------------------

    def reset(self) -> None:
        """Forget orders, faults and the request log (between tests)."""
        with self._lock:
            self.state = EmulatorState()
            self._ids = itertools.count(1)
            self.ws_messages = []
        self.resume_streams()

    def drop_streams(self) -> None:
        """Every websocket drops; none is accepted until ``resume_streams``."""
        with self._lock:
            self.streams_down = True
            sockets, self._sockets = self._sockets, []
        for ws in sockets:
            ws.drop()

    def resume_streams(self) -> None:
        with self._lock:
            self.streams_down = False

    def stream_clients(self, kind: str = "private") -> int:
        with self._lock:
            return sum(1 for ws in self._sockets if ws.kind == kind and (
                ws.authenticated or kind == "public"))

    def fill_order(self, order_id: str, price: Decimal | None = None) -> None:
        """A resting order fills (the market crossed it), at its limit price by default."""
        with self._lock:
            row = self.state.orders[order_id]
            self._fill(row, Decimal(row["leavesQty"]), Decimal(price or row["price"]))

    def trade_elsewhere(self, symbol_id: str, side: str, qty: str) -> str:
        """A market order placed by someone else on the account: filled at once."""
        answer = self._route("POST", "v5/order/create", {
            "category": "linear", "symbol": symbol_id, "side": side, "orderType": "Market",
            "qty": qty})
        return answer["result"]["orderId"]

    def position_opened_ms(self, symbol_id: str) -> int | None:
        with self._lock:
            return self.state.opened_ms.get(symbol_id)

    def fail_next(self, path: str, kind: str, *, code: int = 0, message: str = "",
                  times: int = 1, ratio: Decimal | str = "0.5", seconds: float = 5.0,
                  match: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.state.faults.append(Fault(path, kind, code, message, times, Decimal(ratio),
                                           seconds, match))

    def clear_faults(self) -> None:
        with self._lock:
            self.state.faults.clear()

    def faults_left(self) -> int:
        with self._lock:
            return sum(fault.times for fault in self.state.faults)

    @contextmanager
    def faults_held(self) -> Iterator[None]:
        """No scripted fault fires inside (an observer's reads must not use up a test's faults)."""
        held, self.state.faults_held = self.state.faults_held, True
        try:
            yield
        finally:
            self.state.faults_held = held

    def set_price(self, symbol_id: str, price: Decimal) -> None:
        """Move the market; resting limit orders it crosses fill at their price."""
        with self._lock:
            self.state.prices[symbol_id] = Decimal(price)
            for row in list(self.state.orders.values()):
                if row["symbol"] == symbol_id and row["orderStatus"] in OPEN_STATUSES:
                    self._match_limit(row, resting=True)
            ticker = self._ticker_row(symbol_id)
        self._push("public", f"tickers.{symbol_id}", {
            "topic": f"tickers.{symbol_id}", "type": "snapshot", "data": ticker, "cs": 1,
            "ts": _ms()})

    def hold_position(self, symbol_id: str, size: Decimal, entry_price: Decimal) -> None:
        """Give the account a position (signed size, long > 0) it did not trade here."""
        with self._lock:
            self.state.positions[symbol_id] = (Decimal(size), Decimal(entry_price))

    def position_size(self, symbol_id: str) -> Decimal:
        with self._lock:
            return self.state.positions.get(symbol_id, (Decimal("0"), Decimal("0")))[0]

    def replay_candles(self, symbol_id: str, path: Path) -> None:
        """Serve ``symbol_id``'s klines (and, without a set price, its book) from a candle file."""
        with self._lock:
            self.state.candles[symbol_id] = CandleReplay(path)
            self.state.prices.pop(symbol_id, None)

    def wait_for_order(self, link_id: str, timeout: float) -> bool:
        """Block until an order with ``link_id`` was created (False after ``timeout`` s)."""
        with self._order_created:  # notified under ``_lock``: the check must not take it
            return self._order_created.wait_for(
                lambda: link_id in self.state.by_link_id, timeout)

    def orders_with_link_id(self, link_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self.state.orders.values() if o["orderLinkId"] == link_id]

    def calls(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.state.requests if p == path)

    def _take_fault(self, path: str, params: dict[str, Any]) -> Fault | None:
        with self._lock:
            if self.state.faults_held:
                return None
            for fault in self.state.faults:
                if fault.times > 0 and fault.path == path and fault.applies_to(params):
                    fault.times -= 1
                    return fault
        return None

    def _process_delayed(self) -> None:
        """Creates whose processing was delayed arrive now (a duplicate link id is refused)."""
        with self._lock:
            now = time.time()
            due = [params for at, params in self.state.delayed if at <= now]
            self.state.delayed = [(at, p) for at, p in self.state.delayed if at > now]
            for params in due:
                self._create(params)  # an error answer nobody hears

    # --- the handler ---------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one answer, one segment: no delayed-ACK stalls

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    emulator._websocket(self)
                    return
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                if emulator.latency_ms:
                    time.sleep(emulator.latency_ms / 1000)
                parts = urlsplit(self.path)
                path = parts.path.lstrip("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = dict(parse_qsl(parts.query)) if method == "GET" else (
                    json.loads(body) if body else {})
                if emulator.record_requests:
                    with emulator._lock:
                        emulator.state.requests.append((method, path, params))
                emulator._process_delayed()
                fault = emulator._take_fault(path, params)
                if fault and fault.kind in ("timeout", "drop", "http500", "http429", "retcode"):
                    self._fail(fault)
                    return
                if fault and fault.kind == "empty":  # the listing lags behind: nothing yet
                    self._json(_ok({"category": "linear", "list": [], "nextPageCursor": ""}))
                    return
                if path.startswith("v5/") and not path.startswith("v5/market/"):
                    payload = parts.query if method == "GET" else body
                    if not emulator._signed(self.headers, payload):
                        self._json({"retCode": 10004, "retMsg": "error sign! origin_string[...]",
                                    "result": {}, "retExtInfo": {}, "time": _ms()})
                        return
                if fault and fault.kind == "delayed":  # processed after the client gave up
                    emulator._release.wait(emulator.hold_seconds)
                    emulator._route(method, path, params)
                    emulator.delayed_processed.set()
                    self.close_connection = True
                    return
                if fault and fault.kind == "delayed_accept":  # processed `seconds` later
                    with emulator._lock:
                        emulator.state.delayed.append((time.time() + fault.seconds, params))
                    self._fail(Fault(path, "timeout"))
                    return
                behaviour = fault if fault and fault.kind in BEHAVIOUR_KINDS else None
                if behaviour:
                    fault = None
                answer = emulator._route(method, path, params, behaviour)
                if fault and fault.kind == "truncated_after_accept":
                    body = json.dumps(answer).encode()
                    self._raw(200, body[:len(body) // 2], "application/json")
                    return
                if fault:  # *_after_accept: the exchange acted, the answer is lost
                    self._fail(Fault(path, fault.kind.removesuffix("_after_accept")))
                    return
                self._json(answer)

            def _fail(self, fault: Fault) -> None:
                if fault.kind == "timeout":
                    emulator._release.wait(emulator.hold_seconds)
                    self.close_connection = True
                    return
                if fault.kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault.kind == "http500":
                    self._raw(500, b"Internal Server Error", "text/plain")
                    return
                if fault.kind == "http429":
                    self._raw(429, b"Too Many Requests", "text/plain")
                    return
                rate = "10006" == str(fault.code)
                self._json({"retCode": fault.code, "retMsg": fault.message or "error",
                            "result": {}, "retExtInfo": {}, "time": _ms()},
                           headers={"X-Bapi-Limit-Status": "0"} if rate else None)

            def _json(self, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._raw(200, json.dumps(data).encode(), "application/json", headers)

            def _raw(self, status: int, body: bytes, content_type: str,
                     headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _signed(self, headers: Any, payload: str) -> bool:
        key, ts = headers.get("X-BAPI-API-KEY"), headers.get("X-BAPI-TIMESTAMP")
        window, sign = headers.get("X-BAPI-RECV-WINDOW"), headers.get("X-BAPI-SIGN")
        if key != self.api_key or not (ts and window and sign):
            return False
        expected = hmac.new(self.api_secret.encode(), f"{ts}{key}{window}{payload}".encode(),
                            hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, sign)

    # --- endpoints ---------------------------------------------------------------------

    def _route(self, method: str, path: str, params: dict[str, Any],
               behaviour: Fault | None = None) -> dict[str, Any]:
        handler = {
            "v5/market/instruments-info": self._instruments,
            "v5/asset/coin/query-info": lambda p: _ok({"rows": []}),
            "v5/market/tickers": self._tickers,
            "v5/market/orderbook": self._orderbook,
            "v5/market/kline": self._kline,
            "v5/market/mark-price-kline": self._kline,
            "v5/market/index-price-kline": self._kline,
            "v5/market/premium-index-price-kline": self._premium_kline,
            "v5/market/risk-limit": self._risk_limit,
            "v5/market/funding/history": self._funding_history,
            "v5/market/time": lambda p: _ok({"timeSecond": str(_ms() // 1000),
                                              "timeNano": str(_ms() * 1_000_000)}),
            "v5/order/create": self._create,
            "v5/order/realtime": self._realtime,
            "v5/order/history": self._history,
            "v5/order/cancel": self._cancel,
            "v5/account/wallet-balance": self._balance,
            "v5/position/list": self._positions,
            "v5/execution/list": self._executions,
        }.get(path)
        if handler is None:
            return {"retCode": 10001, "retMsg": f"unknown path {path}", "result": {},
                    "retExtInfo": {}, "time": _ms()}
        with self._lock:
            if path in ("v5/order/create", "v5/order/cancel"):
                return handler(params, behaviour)
            return handler(params)

    def _instruments(self, params: dict[str, Any]) -> dict[str, Any]:
        category = params.get("category", "linear")
        listed = [] if params.get("status") == "PreLaunch" else copy.deepcopy(
            INSTRUMENTS_BY_CATEGORY.get(category, []))
        return _ok({"category": category, "list": listed, "nextPageCursor": ""})

    def _mid(self, symbol: str) -> Decimal:
        """The set price, else the replayed candle's close now."""
        if symbol in self.state.prices or symbol not in self.state.candles:
            return self.state.prices[symbol]
        return self.state.candles[symbol].close_at(_ms())

    def _touch(self, symbol: str) -> tuple[Decimal, Decimal]:
        mid = self._mid(symbol)
        if symbol in self.state.candles:  # a cheap coin: a spread of one tick or so
            half = (mid / 10_000).quantize(Decimal("0.0001"))
            return mid - half, mid + half
        return mid - Decimal("0.5"), mid + Decimal("0.5")

    def _ticker_row(self, symbol: str) -> dict[str, Any]:
        row = copy.deepcopy(self._recorded["methods"]["fetchTicker"][0]["httpResponse"]
                            ["result"]["list"][0])
        bid, ask = self._touch(symbol)
        price = str(self._mid(symbol))
        row.update(symbol=symbol, lastPrice=price, markPrice=price, bid1Price=str(bid),
                   ask1Price=str(ask))
        return row

    def _tickers(self, params: dict[str, Any]) -> dict[str, Any]:
        """One symbol, or every symbol of the category (ccxt's batched ``fetch_tickers``)."""
        symbols = [params["symbol"]] if params.get("symbol") else sorted(self.state.prices)
        return _ok({"category": params.get("category", "linear"),
                    "list": [self._ticker_row(symbol) for symbol in symbols]})

    def _orderbook(self, params: dict[str, Any]) -> dict[str, Any]:
        symbol = params["symbol"]
        bid, ask = self._touch(symbol)
        depth = int(params.get("limit", 25))
        replayed = symbol in self.state.candles  # a cheap coin: ticks and sizes to match
        step, size = ((ask - bid), "20000.00") if replayed else (Decimal(1), "2.000")
        bids = [[str(bid - i * step), size] for i in range(depth)]
        asks = [[str(ask + i * step), size] for i in range(depth)]
        return _ok({"s": symbol, "b": bids, "a": asks, "ts": _ms(), "u": 1, "seq": 1,
                    "cts": _ms()})

    def _kline(self, params: dict[str, Any]) -> dict[str, Any]:
        symbol = params.get("symbol", "BTCUSDT")
        if symbol in self.state.candles:
            return _ok({"symbol": symbol, "category": params.get("category", "linear"),
                        "list": self.state.candles[symbol].window(params, _ms())})
        result = copy.deepcopy(self._recorded["methods"]["fetchOHLCV"][0]["httpResponse"]
                               ["result"])
        result["symbol"] = symbol
        return _ok(result)

    def _premium_kline(self, params: dict[str, Any]) -> dict[str, Any]:
        """Premium index: flat at zero (mark = index), in the kline's window."""
        answer = self._kline({**params, "symbol": params.get("symbol", "BTCUSDT")})
        answer["result"]["list"] = [[row[0], "0", "0", "0", "0"]
                                    for row in answer["result"]["list"]]
        return answer

    def _risk_limit(self, params: dict[str, Any]) -> dict[str, Any]:
        symbols = [params["symbol"]] if params.get("symbol") else [
            i["symbol"] for i in INSTRUMENTS]
        rows = [{"id": 1, "symbol": symbol, "riskLimitValue": "2000000",
                 "maintenanceMargin": "0.005", "initialMargin": "0.01", "isLowestRisk": 1,
                 "maxLeverage": "100.00", "mmDeduction": ""} for symbol in symbols]
        return _ok({"category": params.get("category", "linear"), "list": rows,
                    "nextPageCursor": ""})

    def _funding_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A funding rate of 0.01 % every 8 hours, newest first, within start/end."""
        period = 8 * 3_600_000
        end = min(int(params.get("endTime", _ms())), _ms())
        end -= end % period
        limit = max(1, min(int(params.get("limit", 200)), 200))
        start = int(params.get("startTime", end - (limit - 1) * period))
        times = [t for t in range(end, start - 1, -period)][:limit]
        rows = [{"symbol": params.get("symbol", "BTCUSDT"), "fundingRate": "0.0001",
                 "fundingRateTimestamp": str(t)} for t in times]
        return _ok({"category": params.get("category", "linear"), "list": rows})

    def _order_row(self, order_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """A new order in the shape of the recorded ``v5/order/realtime`` answer."""
        row = copy.deepcopy(self._recorded["methods"]["fetchOpenOrder"][0]["httpResponse"]
                            ["result"]["list"][0])
        qty = Decimal(params["qty"])
        now = str(_ms())
        row.update(symbol=params["symbol"], orderId=order_id,
                   orderLinkId=params.get("orderLinkId", ""), side=params["side"],
                   orderType=params["orderType"], price=params.get("price", "0"),
                   qty=params["qty"], leavesQty=params["qty"], cumExecQty="0", cumExecValue="0",
                   cumExecFee="0", avgPrice="", orderStatus="New",
                   reduceOnly=bool(params.get("reduceOnly", False)), createdTime=now,
                   updatedTime=now, leavesValue=str(qty * Decimal(params.get("price") or 0)),
                   timeInForce="IOC" if params["orderType"] == "Market" else "GTC")
        return row

    def _create(self, params: dict[str, Any], behaviour: Fault | None = None) -> dict[str, Any]:
        link_id = params.get("orderLinkId", "")
        if link_id and link_id in self.state.by_link_id:
            return _error(110072, "OrderLinkedID is duplicate")
        if params.get("symbol") not in {*self.state.prices, *self.state.candles}:
            return _error(10001, "params error: symbol invalid")
        if _reduce_only(params) and self.state.strict_reduce_only:
            held = self.state.positions.get(params["symbol"], (Decimal("0"), Decimal("0")))[0]
            reducing = held > 0 if params["side"] == "Sell" else held < 0
            if not reducing or Decimal(params["qty"]) > abs(held):
                return _error(110017, "current position is zero, cannot fix reduce-only "
                                      "order qty")
        order_id = f"emu-{next(self._ids):06d}"
        row = self._order_row(order_id, params)
        self.state.orders[order_id] = row
        if link_id:
            self.state.by_link_id[link_id] = order_id
        kind = behaviour.kind if behaviour else ""
        if kind in ("stay_open", "partial_fill"):
            self.state.frozen.add(order_id)
        if kind == "partial_fill":
            bid, ask = self._touch(params["symbol"])
            part = _on_step(Decimal(params["qty"]) * behaviour.ratio, row["symbol"])
            if part > 0:
                self._fill(row, part, ask if params["side"] == "Buy" else bid)
        elif kind != "stay_open":
            if params["orderType"] == "Market" and self.state.fill_market_orders:
                bid, ask = self._touch(params["symbol"])
                self._fill(row, Decimal(params["qty"]), ask if params["side"] == "Buy" else bid)
            elif params["orderType"] == "Limit":
                self._match_limit(row, resting=False)
        if row["orderStatus"] == "New":
            self._push_later("order", [copy.deepcopy(row)])
        with self._order_created:
            self._order_created.notify_all()
        return _ok({"orderId": order_id, "orderLinkId": link_id})

    def _match_limit(self, row: dict[str, Any], *, resting: bool) -> None:
        """Fill a limit order the market crosses: at the touch when placed, else at its price."""
        if row["orderId"] in self.state.frozen or row["orderType"] != "Limit":
            return
        limit = Decimal(row["price"])
        bid, ask = self._touch(row["symbol"])
        buy = row["side"] == "Buy"
        if (ask <= limit) if buy else (bid >= limit):
            price = limit if resting else (ask if buy else bid)
            self._fill(row, Decimal(row["leavesQty"]), price)

    def _fill(self, row: dict[str, Any], quantity: Decimal, price: Decimal) -> None:
        """Fill ``quantity`` of an order at ``price``: its cumulative figures and the position."""
        if quantity <= 0:
            return
        filled = Decimal(row["cumExecQty"] or "0") + quantity
        value = Decimal(row["cumExecValue"] or "0") + quantity * price
        fee = Decimal(row["cumExecFee"] or "0") + quantity * price * FEE_RATE
        left = Decimal(row["qty"]) - filled
        row.update(cumExecQty=str(filled), cumExecValue=str(value), cumExecFee=str(fee),
                   avgPrice=str(value / filled), leavesQty=str(left),
                   leavesValue=str(left * Decimal(row.get("price") or 0)),
                   orderStatus="Filled" if left <= 0 else "PartiallyFilled",
                   cumFeeDetail={"USDT": str(fee)}, updatedTime=str(_ms()))
        held, entry = self.state.positions.get(row["symbol"], (Decimal("0"), Decimal("0")))
        signed = quantity if row["side"] == "Buy" else -quantity
        if held and (held > 0) != (signed > 0):  # reducing
            closing = min(abs(signed), abs(held))
            held += closing if held < 0 else -closing
            signed += -closing if signed > 0 else closing
            entry = entry if held else Decimal("0")
        if signed and not row["reduceOnly"]:
            total = held + signed
            entry = (abs(held) * entry + abs(signed) * price) / abs(total)
            if not held:
                self.state.opened_ms[row["symbol"]] = _ms()
            held = total
        self.state.positions[row["symbol"]] = (held, entry)
        execution = {
            "symbol": row["symbol"], "orderId": row["orderId"],
            "orderLinkId": row["orderLinkId"], "side": row["side"], "orderPrice": row["price"],
            "orderQty": row["qty"], "leavesQty": row["leavesQty"], "orderType": row["orderType"],
            "stopOrderType": "", "execFee": str(quantity * price * FEE_RATE),
            "execId": str(uuid.uuid4()), "execPrice": str(price), "execQty": str(quantity),
            "execType": "Trade", "execValue": str(quantity * price), "execTime": str(_ms()),
            "isMaker": row["orderType"] != "Market", "feeRate": str(FEE_RATE), "tradeIv": "",
            "markIv": "", "markPrice": str(price), "indexPrice": "", "underlyingPrice": "",
            "blockTradeId": "", "closedSize": "", "seq": 1}
        self.state.executions.append(execution)
        # what Bybit pushes after a fill: the order, the execution, the position
        self._push_later("order", [copy.deepcopy(row)])
        self._push_later("execution", [copy.deepcopy(execution)])
        self._push_later("position", [self._position_row(row["symbol"])])

    def _push_later(self, topic: str, data: list[dict[str, Any]]) -> None:
        """Push to the private subscribers once the request that caused it has answered."""
        message = {"id": uuid.uuid4().hex, "topic": topic, "creationTime": _ms(),
                   "data": [{**row, "category": "linear"} for row in data]}
        threading.Thread(target=self._push, args=("private", topic, message),
                         daemon=True).start()

    def _push(self, kind: str, topic: str, message: dict[str, Any]) -> None:
        with self._lock:  # after the state change that caused it (its caller holds the lock)
            targets = [ws for ws in self._sockets if ws.kind == kind and topic in ws.topics]
        for ws in targets:
            ws.send(message)

    def _matching(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = list(self.state.orders.values())
        if params.get("orderId"):
            rows = [r for r in rows if r["orderId"] == params["orderId"]]
        if params.get("orderLinkId"):
            rows = [r for r in rows if r["orderLinkId"] == params["orderLinkId"]]
        if params.get("symbol"):
            rows = [r for r in rows if r["symbol"] == params["symbol"]]
        if params.get("orderStatus"):
            rows = [r for r in rows if r["orderStatus"] == params["orderStatus"]]
        return rows

    def _realtime(self, params: dict[str, Any]) -> dict[str, Any]:
        rows = self._matching(params)
        if not (params.get("orderId") or params.get("orderLinkId")):  # a listing: open only
            rows = [r for r in rows if r["orderStatus"] in OPEN_STATUSES]
        return _page(rows, params)

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        rows = [r for r in self._matching(params) if r["orderStatus"] not in OPEN_STATUSES]
        if params.get("startTime"):
            rows = [r for r in rows if int(r["createdTime"]) >= int(params["startTime"])]
        return _page(rows, params)

    def _cancel(self, params: dict[str, Any], behaviour: Fault | None = None) -> dict[str, Any]:
        rows = self._matching({k: params.get(k) for k in ("orderId", "orderLinkId")})
        if rows and rows[0]["orderStatus"] in OPEN_STATUSES and behaviour:  # fill_on_cancel
            row = rows[0]
            bid, ask = self._touch(row["symbol"])
            part = _on_step(Decimal(row["leavesQty"]) * behaviour.ratio, row["symbol"])
            self._fill(row, part, ask if row["side"] == "Buy" else bid)
        if not rows or rows[0]["orderStatus"] not in OPEN_STATUSES:
            return _error(110001, "order not exists or too late to cancel")
        rows[0].update(orderStatus="Cancelled", updatedTime=str(_ms()))
        self._push_later("order", [copy.deepcopy(rows[0])])
        return _ok({"orderId": rows[0]["orderId"], "orderLinkId": rows[0]["orderLinkId"]})

    def _balance(self, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(copy.deepcopy(self._recorded["methods"]["fetchBalance"][0]["httpResponse"]
                                 ["result"]))

    def _position_row(self, symbol: str) -> dict[str, Any]:
        """One symbol's position in the recorded ``v5/position/list`` shape (size 0: flat)."""
        template = self._recorded["methods"]["fetchPositions"][0]["httpResponse"]["result"][
            "list"][0]
        size, entry = self.state.positions.get(symbol, (Decimal("0"), Decimal("0")))
        mark = self._mid(symbol)
        return dict(copy.deepcopy(template), symbol=symbol,
                    side="Buy" if size > 0 else "Sell" if size < 0 else "",
                    size=str(abs(size)), avgPrice=str(entry), markPrice=str(mark),
                    positionValue=str(abs(size) * entry),
                    unrealisedPnl=str((mark - entry) * size),
                    createdTime=str(self.state.opened_ms.get(symbol, template["createdTime"])),
                    updatedTime=str(_ms()))

    def _positions(self, params: dict[str, Any]) -> dict[str, Any]:
        """The positions the fills built, in the shape of the recorded answer."""
        rows = [self._position_row(symbol) for symbol, (size, _) in sorted(
            self.state.positions.items()) if size]
        return _ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def _executions(self, params: dict[str, Any]) -> dict[str, Any]:
        since = int(params.get("startTime") or 0)
        rows = [e for e in reversed(self.state.executions)  # newest first, like Bybit
                if (not params.get("symbol") or e["symbol"] == params["symbol"])
                and int(e["execTime"]) >= since]
        return _ok({"category": "linear", "list": copy.deepcopy(rows), "nextPageCursor": ""})

    # --- websockets ------------------------------------------------------------------------

    def _websocket(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve one websocket on the handler's connection until it closes."""
        path = urlsplit(handler.path).path
        kind = {"/v5/public/linear": "public", "/v5/private": "private"}.get(path)
        handler.close_connection = True
        protocol = ServerProtocol()
        # The HTTP server parsed the handshake already: hand it to the protocol as it came.
        head = "".join(f"{name}: {value}\r\n" for name, value in handler.headers.items())
        protocol.receive_data(handler.raw_requestline + head.encode("latin-1") + b"\r\n")
        [request] = protocol.events_received()
        if kind is None or self.streams_down:
            response = protocol.reject(503 if kind else 404, "unavailable\n")
        else:
            response = protocol.accept(request)
        protocol.send_response(response)
        ws = _Socket(handler.connection, protocol, kind or "")
        ws.flush()
        if response.status_code != 101:
            return
        with self._lock:
            self._sockets.append(ws)
        try:
            while True:
                try:
                    data = ws.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    protocol.receive_eof()
                    break
                protocol.receive_data(data)
                for frame in protocol.events_received():
                    if frame.opcode == Opcode.TEXT:
                        self._ws_message(ws, json.loads(frame.data))
                ws.flush()  # pongs and close frames the protocol queued
        finally:
            with self._lock:
                if ws in self._sockets:
                    self._sockets.remove(ws)

    def _ws_message(self, ws: _Socket, message: dict[str, Any]) -> None:
        with self._lock:
            self.ws_messages.append(message)
        op, req_id = message.get("op"), message.get("req_id")
        if op == "ping":
            ws.send({"success": True, "ret_msg": "pong", "conn_id": ws.conn_id,
                     "req_id": req_id, "op": "ping"})
        elif op == "auth":
            key, expires, sign = (list(message.get("args") or []) + [None] * 3)[:3]
            expected = hmac.new(self.api_secret.encode(), f"GET/realtime{expires}".encode(),
                                hashlib.sha256).hexdigest()
            ws.authenticated = key == self.api_key and hmac.compare_digest(expected,
                                                                           str(sign or ""))
            answer = {"success": ws.authenticated, "ret_msg": "", "op": "auth",
                      "conn_id": ws.conn_id}
            if not ws.authenticated:  # Bybit names the request it refuses
                answer.update(ret_msg="error:USVC1111", request={"op": "auth",
                                                                 "args": message.get("args")})
            ws.send(answer)
        elif op == "subscribe":
            topics = [str(t) for t in message.get("args") or []]
            allowed = ws.kind == "public" or ws.authenticated
            if allowed:
                ws.topics.update(topics)
            ws.send({"success": allowed, "ret_msg": "" if allowed else "Request not authorized",
                     "conn_id": ws.conn_id, "req_id": req_id, "op": "subscribe"})
            for topic in topics if allowed and ws.kind == "public" else []:
                symbol = topic.split(".", 1)[-1]
                with self._lock:
                    known = symbol in self.state.prices or symbol in self.state.candles
                    ticker = self._ticker_row(symbol) if known else None
                if ticker:
                    ws.send({"topic": topic, "type": "snapshot", "data": ticker, "cs": 1,
                             "ts": _ms()})


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": _ms()}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}, "time": _ms()}


def _page(rows: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """One page of a listing, newest first, with Bybit's cursor to the next."""
    rows = sorted(rows, key=lambda r: (int(r["createdTime"]), r["orderId"]), reverse=True)
    limit = min(int(params.get("limit") or PAGE_DEFAULT), PAGE_MAX)
    start = int(params.get("cursor") or 0)
    page = rows[start:start + limit]
    cursor = str(start + limit) if start + limit < len(rows) else ""
    return _ok({"category": "linear", "list": copy.deepcopy(page), "nextPageCursor": cursor})


def _reduce_only(params: dict[str, Any]) -> bool:
    return params.get("reduceOnly") in (True, "true", "True")


def _on_step(quantity: Decimal, symbol: str) -> Decimal:
    """``quantity`` truncated to the instrument's quantity step."""
    step = Decimal(next(i["lotSizeFilter"]["qtyStep"] for i in INSTRUMENTS
                        if i["symbol"] == symbol))
    return (quantity / step).to_integral_value(rounding="ROUND_DOWN") * step


def _ms() -> int:
    return int(time.time() * 1000)
