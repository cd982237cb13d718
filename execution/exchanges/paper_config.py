"""The paper exchange's settings (``ExchangeAccount.paper_config``), parsed and validated.

JSON, keys in camelCase or snake_case; every key is optional::

    {
      "feed": {"type": "candle_replay",          # or "random_walk", "manual"
               "timeframe": "5m", "startAt": "2024-01-01T00:00:00Z", "loop": true,
               "files": {"XRP/USDT:USDT": "binance-futures_XRP-USDT_5m.csv"},
               "prices": {"BTC/USDT:USDT": "50000"},        # manual / random-walk start
               "defaultPrice": "100", "seed": 7, "volatilityPercent": 0.05, "stepSeconds": 5},
      "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
      "book": {"spreadPercent": 0.02, "levelNotional": 50000, "levelStepPercent": 0.01,
               "depth": 25},
      "slippagePercent": 0,          # extra adverse move on every market fill
      "leverage": 10,
      "balances": {"USDT": "10000"}, # default: the account's starting capital
      "markets": {"BTC/USDT:USDT": {"amountStep": "0.001", "priceStep": "0.1",
                                    "minAmount": "0.001"}},
      "latencyMs": 0,
      "strictReduceOnly": false,     # true: a reduce-only order without a paper position is refused
      "faults": [{"on": "place", "kind": "timeout_after_accept", "times": 1}]
    }

Symbols without a file in ``feed.files`` follow a random walk (``manual``: a fixed
price) starting at ``feed.prices[symbol]`` or ``feed.defaultPrice``. With
``candle_replay`` and no ``files`` the shipped candle files are replayed.

Faults are consumed in order, each ``times`` times (default 1), on the call named
by ``on`` (``place``, ``fetch``, ``find``, ``cancel``, ``orders`` (the listing),
``ticker``, ``book``, ``balance``, ``positions``, ``candles``, ``trades`` or ``any``). Kinds:

- before the exchange acts: ``timeout``, ``drop`` (connection dropped),
  ``rate_limit``, ``unavailable``, ``reject`` (with ``error``: ``insufficient_funds``,
  ``invalid_order`` or ``bad_symbol``, and an optional ``message``), ``auth``;
- after the exchange acted (the order exists, the answer is lost):
  ``timeout_after_accept``, ``drop_after_accept``, ``rate_limit_after_accept``,
  ``unavailable_after_accept`` (HTTP 500 after processing); on ``place``,
  ``truncated_after_accept`` answers "success" without an order id (what ccxt makes
  of a 200 reply whose body was cut off);
- ``delayed_accept`` on ``place``: the request times out and the exchange processes
  it ``seconds`` later (default 5) — unless an order with that client id arrived first;
- order behaviour on ``place``: ``stay_open`` (accepted, never fills by itself),
  ``partial_fill`` (fills ``ratio`` of the quantity, the rest stays open);
- on ``cancel``: ``fill_on_cancel`` (the order fills — ``ratio`` of what is left,
  default all — just before the cancel arrives; when nothing is left the cancel
  answers "too late to cancel");
- on ``find``: ``not_listed`` (the lookup by client order id does not list an order
  that exists yet — the exchange's listing lags behind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime

from execution.exchanges.feeds import TIMEFRAME_SECONDS
from tradingsite.live_config import camel_to_snake

FEED_TYPES = ("candle_replay", "random_walk", "manual")
CALLS = ("place", "fetch", "find", "cancel", "orders", "ticker", "book", "balance", "positions",
         "candles", "trades", "any")
BEFORE_KINDS = ("timeout", "drop", "rate_limit", "unavailable", "reject", "auth")
AFTER_KINDS = ("timeout_after_accept", "drop_after_accept", "rate_limit_after_accept",
               "unavailable_after_accept")
PLACE_KINDS = ("stay_open", "partial_fill", "truncated_after_accept", "delayed_accept")
CANCEL_KINDS = ("fill_on_cancel",)
FIND_KINDS = ("not_listed",)
FAULT_KINDS = BEFORE_KINDS + AFTER_KINDS + PLACE_KINDS + CANCEL_KINDS + FIND_KINDS
REJECT_ERRORS = ("insufficient_funds", "invalid_order", "bad_symbol")
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)


class PaperConfigError(ValueError):
    """A bad ``paper_config`` value; the message names the key."""


@dataclass(frozen=True)
class FeedConfig:
    type: str = "random_walk"
    timeframe: str = "5m"
    start_at: datetime | None = None
    loop: bool = True
    files: dict[str, str] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    default_price: Decimal = Decimal("100")
    seed: int = 7
    volatility_percent: float = 0.05
    step_seconds: float = 5.0


@dataclass(frozen=True)
class FeesConfig:
    taker_percent: Decimal = Decimal("0.055")
    maker_percent: Decimal = Decimal("0.02")


@dataclass(frozen=True)
class BookConfig:
    spread_percent: Decimal = Decimal("0.02")
    level_notional: Decimal = Decimal("50000")
    level_step_percent: Decimal = Decimal("0.01")
    depth: int = 25


@dataclass(frozen=True)
class MarketConfig:
    amount_step: Decimal = Decimal("0.001")
    price_step: Decimal = Decimal("0.0001")
    min_amount: Decimal | None = None


@dataclass(frozen=True)
class FaultSpec:
    on: str
    kind: str
    times: int = 1
    error: str = "invalid_order"
    message: str = ""
    ratio: Decimal = Decimal("1")
    seconds: Decimal = Decimal("5")


@dataclass(frozen=True)
class PaperConfig:
    feed: FeedConfig = field(default_factory=FeedConfig)
    fees: FeesConfig = field(default_factory=FeesConfig)
    book: BookConfig = field(default_factory=BookConfig)
    slippage_percent: Decimal = Decimal("0")
    leverage: Decimal = Decimal("10")
    balances: dict[str, Decimal] = field(default_factory=dict)
    markets: dict[str, MarketConfig] = field(default_factory=dict)
    latency_ms: int = 0
    strict_reduce_only: bool = False
    faults: tuple[FaultSpec, ...] = ()

    def market(self, symbol: str) -> MarketConfig:
        return self.markets.get(symbol) or MarketConfig()


def _snake(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PaperConfigError(f"{path}: expected an object, got {type(data).__name__}")
    return {camel_to_snake(k): v for k, v in data.items()}


def _check_keys(data: dict[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PaperConfigError(f"{path}.{unknown[0]}: unknown key (allowed: "
                               f"{', '.join(sorted(allowed))})")


def _decimal(value: Any, path: str, *, positive: bool = False, non_negative: bool = False
             ) -> Decimal:
    if isinstance(value, bool):
        raise PaperConfigError(f"{path}: expected a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PaperConfigError(f"{path}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise PaperConfigError(f"{path}: expected a finite number, got {value!r}")
    if positive and number <= 0:
        raise PaperConfigError(f"{path}: must be greater than 0, got {value!r}")
    if non_negative and number < 0:
        raise PaperConfigError(f"{path}: must be at least 0, got {value!r}")
    return number


def _int(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PaperConfigError(f"{path}: expected a whole number ≥ {minimum}, got {value!r}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise PaperConfigError(f"{path}: expected true or false, got {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], path: str) -> str:
    if value not in choices:
        raise PaperConfigError(f"{path}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _feed(raw: Any, path: str) -> FeedConfig:
    data = _snake(raw, path)
    _check_keys(data, {"type", "timeframe", "start_at", "loop", "files", "prices",
                       "default_price", "seed", "volatility_percent", "step_seconds"}, path)
    kwargs: dict[str, Any] = {}
    if "type" in data:
        kwargs["type"] = _choice(data["type"], FEED_TYPES, f"{path}.type")
    if "timeframe" in data:
        kwargs["timeframe"] = _choice(data["timeframe"], tuple(TIMEFRAME_SECONDS),
                                      f"{path}.timeframe")
    if "start_at" in data:
        start = parse_datetime(str(data["start_at"]))
        if start is None or start.tzinfo is None:
            raise PaperConfigError(f"{path}.startAt: expected an ISO datetime with a time "
                                   f"zone, got {data['start_at']!r}")
        kwargs["start_at"] = start
    if "loop" in data:
        kwargs["loop"] = _bool(data["loop"], f"{path}.loop")
    if "files" in data:
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise PaperConfigError(f"{path}.files: expected {{symbol: file name}}")
        kwargs["files"] = dict(files)
    if "prices" in data:
        if not isinstance(data["prices"], dict):
            raise PaperConfigError(f"{path}.prices: expected {{symbol: price}}")
        kwargs["prices"] = {s: _decimal(p, f"{path}.prices.{s}", positive=True)
                            for s, p in data["prices"].items()}
    if "default_price" in data:
        kwargs["default_price"] = _decimal(data["default_price"], f"{path}.defaultPrice",
                                           positive=True)
    if "seed" in data:
        kwargs["seed"] = _int(data["seed"], f"{path}.seed")
    if "volatility_percent" in data:
        kwargs["volatility_percent"] = float(_decimal(data["volatility_percent"],
                                                      f"{path}.volatilityPercent",
                                                      non_negative=True))
    if "step_seconds" in data:
        kwargs["step_seconds"] = float(_decimal(data["step_seconds"], f"{path}.stepSeconds",
                                                positive=True))
    return FeedConfig(**kwargs)


def _fault(raw: Any, path: str) -> FaultSpec:
    data = _snake(raw, path)
    _check_keys(data, {"on", "kind", "times", "error", "message", "ratio", "seconds"}, path)
    if "kind" not in data:
        raise PaperConfigError(f"{path}.kind: required")
    kind = _choice(data["kind"], FAULT_KINDS, f"{path}.kind")
    only = "cancel" if kind in CANCEL_KINDS else "find" if kind in FIND_KINDS else (
        "place" if kind in PLACE_KINDS else None)
    on = _choice(data.get("on", only or "place"), CALLS, f"{path}.on")
    if only and on != only:
        raise PaperConfigError(f"{path}.on: {kind} applies to {only}, got {on!r}")
    ratio = _decimal(data.get("ratio", "1" if kind in CANCEL_KINDS else "0.5"),
                     f"{path}.ratio", positive=True)
    if ratio > 1:
        raise PaperConfigError(f"{path}.ratio: must be at most 1, got {data.get('ratio')!r}")
    return FaultSpec(
        on=on, kind=kind, times=_int(data.get("times", 1), f"{path}.times", minimum=1),
        error=_choice(data.get("error", "invalid_order"), REJECT_ERRORS, f"{path}.error"),
        message=str(data.get("message", "")), ratio=ratio,
        seconds=_decimal(data.get("seconds", "5"), f"{path}.seconds", non_negative=True))


def parse_paper_config(raw: dict[str, Any] | None, path: str = "paper_config") -> PaperConfig:
    """Validate ``raw`` and return the typed config; errors name the offending key."""
    data = _snake(raw or {}, path)
    _check_keys(data, {"feed", "fees", "book", "slippage_percent", "leverage", "balances",
                       "markets", "latency_ms", "strict_reduce_only", "faults"}, path)
    kwargs: dict[str, Any] = {}
    if "feed" in data:
        kwargs["feed"] = _feed(data["feed"], f"{path}.feed")
    if "fees" in data:
        fees = _snake(data["fees"], f"{path}.fees")
        _check_keys(fees, {"taker_percent", "maker_percent"}, f"{path}.fees")
        kwargs["fees"] = FeesConfig(**{
            k: _decimal(v, f"{path}.fees.{k}", non_negative=True) for k, v in fees.items()})
    if "book" in data:
        book = _snake(data["book"], f"{path}.book")
        _check_keys(book, {"spread_percent", "level_notional", "level_step_percent", "depth"},
                    f"{path}.book")
        kwargs["book"] = BookConfig(**{
            k: (_int(v, f"{path}.book.depth", minimum=1) if k == "depth"
                else _decimal(v, f"{path}.book.{k}", non_negative=k != "level_notional",
                              positive=k == "level_notional"))
            for k, v in book.items()})
    if "slippage_percent" in data:
        kwargs["slippage_percent"] = _decimal(data["slippage_percent"],
                                              f"{path}.slippagePercent", non_negative=True)
    if "leverage" in data:
        kwargs["leverage"] = _decimal(data["leverage"], f"{path}.leverage", positive=True)
    if "balances" in data:
        if not isinstance(data["balances"], dict):
            raise PaperConfigError(f"{path}.balances: expected {{currency: amount}}")
        kwargs["balances"] = {c: _decimal(v, f"{path}.balances.{c}", non_negative=True)
                              for c, v in data["balances"].items()}
    if "markets" in data:
        if not isinstance(data["markets"], dict):
            raise PaperConfigError(f"{path}.markets: expected {{symbol: rules}}")
        markets = {}
        for symbol, rules in data["markets"].items():
            where = f"{path}.markets.{symbol}"
            rules = _snake(rules, where)
            _check_keys(rules, {"amount_step", "price_step", "min_amount"}, where)
            markets[symbol] = MarketConfig(**{k: _decimal(v, f"{where}.{k}", positive=True)
                                              for k, v in rules.items()})
        kwargs["markets"] = markets
    if "latency_ms" in data:
        kwargs["latency_ms"] = _int(data["latency_ms"], f"{path}.latencyMs")
    if "strict_reduce_only" in data:
        kwargs["strict_reduce_only"] = _bool(data["strict_reduce_only"],
                                             f"{path}.strictReduceOnly")
    if "faults" in data:
        if not isinstance(data["faults"], list):
            raise PaperConfigError(f"{path}.faults: expected a list")
        kwargs["faults"] = tuple(_fault(f, f"{path}.faults[{i}]")
                                 for i, f in enumerate(data["faults"]))
    return PaperConfig(**kwargs)
