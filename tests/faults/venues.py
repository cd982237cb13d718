"""The two venues of the fault harness, speaking one vocabulary of faults.

``paper``: the in-process paper exchange. ``bybit``: the real ``ccxt.bybit`` class
against the project's Bybit v5 emulator (HTTP on this machine). Each venue maps the
harness's fault names to its own fault kinds, so one state machine drives both.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execution.exchanges.paper import PaperExchange, paper_exchange_for
from execution.exchanges.paper_config import parse_paper_config
from execution.models import ExchangeAccount
from execution.tests.bybit_emulator import BybitEmulator
from tradingsite.testing.factories import ExchangeAccountFactory

SYMBOL = "BTC/USDT:USDT"
PRICE = Decimal("50000")
CREATE, CANCEL = "v5/order/create", "v5/order/cancel"
REALTIME, HISTORY = "v5/order/realtime", "v5/order/history"
BY_CLIENT_ID = {"orderLinkId": True}
BY_ID = {"orderId": True}


@dataclass(frozen=True)
class Fault:
    """One fault of the harness: a name, how many times, and its parameter."""

    name: str
    times: int = 1
    ratio: str = "0.5"
    seconds: int = 5

    def __str__(self) -> str:
        extra = {"place_partial": f" ratio {self.ratio}", "cancel_fill": f" ratio {self.ratio}",
                 "place_delayed": f" {self.seconds} s"}.get(self.name, "")
        return f"{self.name} ×{self.times}{extra}"


# Faults on the send of an order, before or after the exchange processed it.
PLACE_FAULTS = ("place_timeout", "place_drop", "place_5xx", "place_timeout_after",
                "place_drop_after", "place_5xx_after", "place_429_after", "place_truncated",
                "place_delayed", "place_partial", "place_stay_open")
# Faults on the targeted lookups by client order id (the listing lags, or fails); the
# last: a send whose answer is lost, then a listing that lags (the duplicate close).
LOOKUP_FAULTS = ("lookup_empty", "lookup_5xx", "lost_then_lagging")
OTHER_FAULTS = ("fetch_5xx", "cancel_fill", "cancel_timeout_after")
FAULTS = PLACE_FAULTS + LOOKUP_FAULTS + OTHER_FAULTS


class PaperVenue:
    name = "paper"

    def __init__(self) -> None:
        self.account: ExchangeAccount | None = None

    def open_account(self) -> ExchangeAccount:
        self.account = ExchangeAccountFactory(
            name="paper-harness", starting_capital=Decimal("1000000"), paper_config={
                "feed": {"type": "manual", "prices": {SYMBOL: str(PRICE)}},
                "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
                "book": {"spreadPercent": 0.02, "levelNotional": 5000000,
                         "levelStepPercent": 0.01},
                "markets": {SYMBOL: {"amountStep": "0.001", "priceStep": "0.1",
                                     "minAmount": "0.001"}}})
        return self.account

    @property
    def exchange(self) -> PaperExchange:
        return paper_exchange_for(self.account)

    def inject(self, fault: Fault) -> None:
        kind, on = {
            "place_timeout": ("timeout", "place"), "place_drop": ("drop", "place"),
            "place_5xx": ("unavailable", "place"),
            "place_timeout_after": ("timeout_after_accept", "place"),
            "place_drop_after": ("drop_after_accept", "place"),
            "place_5xx_after": ("unavailable_after_accept", "place"),
            "place_429_after": ("rate_limit_after_accept", "place"),
            "place_truncated": ("truncated_after_accept", "place"),
            "place_delayed": ("delayed_accept", "place"),
            "place_partial": ("partial_fill", "place"), "place_stay_open": ("stay_open", "place"),
            "lookup_empty": ("not_listed", "find"), "lookup_5xx": ("unavailable", "find"),
            "fetch_5xx": ("unavailable", "fetch"), "cancel_fill": ("fill_on_cancel", "cancel"),
            "cancel_timeout_after": ("timeout_after_accept", "cancel"),
        }[fault.name]
        spec: dict[str, Any] = {"on": on, "kind": kind, "times": fault.times}
        if kind in ("partial_fill", "fill_on_cancel"):
            spec["ratio"] = fault.ratio
        if kind == "delayed_accept":
            spec["seconds"] = fault.seconds
        self.exchange.inject(*parse_paper_config({"faults": [spec]}).faults)

    def clear_faults(self) -> None:
        self.exchange.clear_faults()

    def faults_left(self) -> int:
        return self.exchange.faults_left()

    def set_price(self, price: Decimal) -> None:
        self.exchange.set_price(SYMBOL, price)

    def exit_fills_by_client_id(self) -> dict[str, Decimal]:
        return {o.client_order_id: o.filled for o in self.exchange.orders.values()}

    def close(self) -> None:
        return None


class BybitVenue:
    name = "bybit"

    def __init__(self, emulator: BybitEmulator):
        self.emulator = emulator
        self.account: ExchangeAccount | None = None

    def open_account(self) -> ExchangeAccount:
        self.emulator.reset()
        self.account = ExchangeAccountFactory(
            name="bybit-harness", exchange_id="bybit", api_base_url=self.emulator.base_url + "/",
            api_key_env="EXCHANGE_HARNESS_BYBIT_KEY",
            api_secret_env="EXCHANGE_HARNESS_BYBIT_SECRET")
        return self.account

    def inject(self, fault: Fault) -> None:
        fail = self.emulator.fail_next
        n = fault.times
        match fault.name:
            case "place_timeout" | "place_drop":
                fail(CREATE, fault.name.removeprefix("place_"), times=n)
            case "place_5xx":
                fail(CREATE, "http500", times=n)
            case "place_timeout_after" | "place_drop_after":
                fail(CREATE, f"{fault.name.removeprefix('place_').removesuffix('_after')}"
                             "_after_accept", times=n)
            case "place_5xx_after":
                fail(CREATE, "http500_after_accept", times=n)
            case "place_429_after":
                fail(CREATE, "http429_after_accept", times=n)
            case "place_truncated":
                fail(CREATE, "truncated_after_accept", times=n)
            case "place_delayed":
                fail(CREATE, "delayed_accept", times=n, seconds=fault.seconds)
            case "place_partial":
                fail(CREATE, "partial_fill", times=n, ratio=fault.ratio)
            case "place_stay_open":
                fail(CREATE, "stay_open", times=n)
            case "lookup_empty":  # a lookup misses when both listings answer empty
                fail(REALTIME, "empty", times=n, match=BY_CLIENT_ID)
                fail(HISTORY, "empty", times=n, match=BY_CLIENT_ID)
            case "lookup_5xx":
                fail(REALTIME, "http500", times=n, match=BY_CLIENT_ID)
            case "fetch_5xx":
                fail(REALTIME, "http500", times=n, match=BY_ID)
            case "cancel_fill":
                fail(CANCEL, "fill_on_cancel", times=n, ratio=fault.ratio)
            case "cancel_timeout_after":
                fail(CANCEL, "timeout_after_accept", times=n)
            case _:
                raise ValueError(f"unknown fault {fault.name}")

    def clear_faults(self) -> None:
        self.emulator.clear_faults()

    def faults_left(self) -> int:
        return self.emulator.faults_left()

    def set_price(self, price: Decimal) -> None:
        self.emulator.set_price("BTCUSDT", price)

    def exit_fills_by_client_id(self) -> dict[str, Decimal]:
        with self.emulator._lock:
            return {row["orderLinkId"]: Decimal(row["cumExecQty"] or "0")
                    for row in self.emulator.state.orders.values()}

    def close(self) -> None:
        return None
