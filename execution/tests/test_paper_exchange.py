"""The paper exchange: config validation, feeds, fills, balances, positions, faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError

from execution.exchanges.base import OrderRequest
from execution.exchanges.errors import (
    DuplicateOrderError,
    InvalidOrderError,
    OrderNotFound,
    RateLimitedError,
    TransientError,
)
from execution.exchanges.paper import PaperExchange, paper_exchange_for, settle_currency
from execution.exchanges.paper_config import FaultSpec, PaperConfigError, parse_paper_config
from execution.tests.conftest import SYMBOL, paper_config
from tradingsite.testing.factories import ExchangeAccountFactory

XRP = "XRP/USDT:USDT"
REPLAY_START = datetime(2026, 1, 1, tzinfo=UTC)
DEMO_CONFIG = {  # the shape tradingsite's demo seed writes
    "feed": {"type": "candle_replay", "timeframe": "5m", "start_at": REPLAY_START.isoformat(),
             "loop": True, "files": {XRP: "binance-futures_XRP-USDT_5m.csv"}},
    "fees": {"takerPercent": 0.055},
}


def _exchange(**extra) -> PaperExchange:
    return PaperExchange(parse_paper_config(paper_config(**extra)),
                         starting_capital=Decimal("100000"))


def _order(cid: str, side: str = "buy", amount: str = "1", **kwargs) -> OrderRequest:
    return OrderRequest(symbol=SYMBOL, side=side, order_type=kwargs.pop("order_type", "market"),
                        amount=Decimal(amount), client_order_id=cid, **kwargs)


@pytest.mark.parametrize(("config", "message"), [
    ({"feed": {"type": "tape"}},
     "paper_config.feed.type: expected one of candle_replay, random_walk, manual, got 'tape'"),
    ({"fees": {"takerPercent": -1}}, "paper_config.fees.taker_percent: must be at least 0, got -1"),
    ({"leverage": 0}, "paper_config.leverage: must be greater than 0, got 0"),
    ({"feed": {"startAt": "yesterday"}},
     "paper_config.feed.startAt: expected an ISO datetime with a time zone, got 'yesterday'"),
    ({"faults": [{"kind": "meteor"}]}, "paper_config.faults[0].kind: expected one of"),
    ({"faults": [{"kind": "stay_open", "on": "cancel"}]},
     "paper_config.faults[0].on: stay_open applies to place, got 'cancel'"),
    ({"slipage": 1}, "paper_config.slipage: unknown key"),
])
def test_a_bad_paper_config_names_the_key(config, message):
    with pytest.raises(PaperConfigError) as caught:
        parse_paper_config(config)
    assert str(caught.value).startswith(message)


@pytest.mark.django_db
def test_the_account_form_refuses_a_bad_paper_config():
    account = ExchangeAccountFactory.build(name="bad", paper_config={"latencyMs": -5})
    with pytest.raises(ValidationError) as caught:
        account.full_clean()
    assert caught.value.message_dict["paper_config"] == [
        "paper_config.latencyMs: expected a whole number ≥ 0, got -5"]


def test_the_demo_seed_config_is_accepted():
    config = parse_paper_config(DEMO_CONFIG)
    assert config.feed.type == "candle_replay"
    assert config.feed.start_at == REPLAY_START
    assert config.fees.taker_percent == Decimal("0.055")


def test_the_candle_replay_walks_each_bar_open_low_high_close():
    exchange = PaperExchange(parse_paper_config(DEMO_CONFIG))
    # bar 0 of the file: o 1.1893 h 1.1954 l 1.1891 c 1.1941 (an up bar: low first)
    for seconds, price in ((0, "1.1893"), (100, "1.1891"), (200, "1.1954"), (300, "1.1941"),
                           (150, "1.19225")):
        with time_machine.travel(REPLAY_START + timedelta(seconds=seconds), tick=False):
            assert exchange.fetch_ticker(XRP).last == Decimal(price)
    with time_machine.travel(REPLAY_START + timedelta(minutes=5 * 1999), tick=False):
        assert exchange.fetch_ticker(XRP).last == Decimal("1.1893")  # looped to bar 0


def test_replayed_candles_are_the_recorded_bars_closed_so_far():
    exchange = PaperExchange(parse_paper_config(DEMO_CONFIG))
    with time_machine.travel(REPLAY_START + timedelta(minutes=12), tick=False):
        bars = exchange.fetch_candles(XRP, "5m", limit=2)
        [quarter] = exchange.fetch_candles(XRP, "15m", limit=1)  # 3 bars aggregated
    assert [(b.open_time, b.open, b.close) for b in bars] == [
        (REPLAY_START, Decimal("1.1893"), Decimal("1.1941")),
        (REPLAY_START + timedelta(minutes=5), Decimal("1.1941"), Decimal("1.1972"))]
    assert bars[0].volume == Decimal("9289043.5")
    assert quarter.open_time == REPLAY_START - timedelta(minutes=15)  # the file's last 3 bars
    assert (quarter.open, quarter.high, quarter.low, quarter.close, quarter.volume) == (
        Decimal("1.0759"), Decimal("1.0762"), Decimal("1.0711"), Decimal("1.0713"),
        Decimal("2462400.2"))


def test_the_random_walk_is_reproducible_from_its_seed():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    config = {"feed": {"type": "random_walk", "seed": 11, "startAt": start.isoformat(),
                       "prices": {SYMBOL: "50000"}, "volatilityPercent": 0.1}}
    one, two = (PaperExchange(parse_paper_config(config)) for _ in range(2))
    other = PaperExchange(parse_paper_config({**config, "feed": {**config["feed"], "seed": 12}}))
    with time_machine.travel(start, tick=False):
        assert one.fetch_ticker(SYMBOL).last == Decimal("50000")
    with time_machine.travel(start + timedelta(hours=3), tick=False):
        price = one.fetch_ticker(SYMBOL).last
        assert two.fetch_ticker(SYMBOL).last == price
        assert other.fetch_ticker(SYMBOL).last != price
        assert len(one.fetch_candles(SYMBOL, "5m", limit=12)) == 12


def test_fills_move_the_balance_and_the_position():
    exchange = _exchange()
    exchange.place_order(_order("a"))  # 1 BTC at the ask 50 005, fee 27.50275
    balance = exchange.fetch_balance()["USDT"]
    assert (balance.total, balance.used) == (Decimal("99972.49725"), Decimal("5000.5"))
    [position] = exchange.fetch_positions()
    assert (position.side, position.quantity, position.entry_price) == ("long", Decimal("1"),
                                                                         Decimal("50005"))
    assert position.unrealised_pnl == Decimal("-5")  # marked at the mid

    exchange.place_order(_order("b", side="sell", reduce_only=True))  # at the bid 49 995
    # −10 realised, fee 27.49725 more
    assert exchange.fetch_balance()["USDT"].total == Decimal("99935.00000")
    assert exchange.fetch_positions() == []


def test_a_strict_paper_exchange_refuses_a_reduce_only_order_without_a_position():
    exchange = _exchange(strictReduceOnly=True)
    with pytest.raises(InvalidOrderError) as caught:
        exchange.place_order(_order("r", side="sell", reduce_only=True))
    assert caught.value.code == "110017"
    lenient = _exchange()
    assert lenient.place_order(_order("r", side="sell", reduce_only=True)).status == "closed"
    assert lenient.fetch_positions() == []  # nothing to reduce: no position appears


def test_a_client_order_id_is_accepted_once():
    exchange = _exchange()
    exchange.place_order(_order("same"))
    with pytest.raises(DuplicateOrderError, match="OrderLinkedID is duplicate"):
        exchange.place_order(_order("same"))
    assert len(exchange.orders_with_client_id("same")) == 1


def test_faults_are_consumed_in_order_and_counted():
    exchange = _exchange(faults=[{"kind": "rate_limit", "times": 2}])
    exchange.inject(FaultSpec(on="place", kind="timeout"))
    errors = []
    for cid in ("1", "2", "3", "4"):
        try:
            exchange.place_order(_order(cid))
        except TransientError as exc:
            errors.append(type(exc))
    assert errors == [RateLimitedError, RateLimitedError, TransientError]
    assert exchange.calls["place"] == 4
    assert list(exchange.orders) == ["paper-1"]


def test_latency_is_simulated_with_the_injected_sleep():
    slept = []
    exchange = PaperExchange(parse_paper_config(paper_config(latencyMs=120)), sleep=slept.append)
    exchange.fetch_ticker(SYMBOL)
    exchange.place_order(_order("x"))
    assert slept == [0.12, 0.12]


def test_cancelling_a_filled_order_is_too_late():
    exchange = _exchange()
    placed = exchange.place_order(_order("f"))
    with pytest.raises(OrderNotFound, match="too late to cancel"):
        exchange.cancel_order(placed.id, SYMBOL)


@pytest.mark.django_db
def test_each_account_has_one_exchange_per_process_and_keeps_it_on_reconfiguration(
        paper_account):
    exchange = paper_exchange_for(paper_account)
    exchange.place_order(_order("kept"))
    paper_account.paper_config = paper_config(faults=[{"kind": "timeout"}])
    paper_account.save()
    again = paper_exchange_for(paper_account)
    assert again is exchange
    assert list(again.orders) == ["paper-1"]
    assert again.config.faults[0].kind == "timeout"


@pytest.mark.parametrize(("symbol", "currency"), [("BTC/USDT:USDT", "USDT"), ("ETH/BTC", "BTC"),
                                                  ("BTC/USD:BTC-250328", "BTC")])
def test_the_settle_currency_of_a_symbol(symbol, currency):
    assert settle_currency(symbol) == currency


def test_every_order_of_a_symbol_is_listed_open_and_final_since_a_time():
    with time_machine.travel(REPLAY_START, tick=False) as clock:
        exchange = _exchange(faults=[{"kind": "stay_open"}])
        exchange.place_order(_order("resting", amount="0.5"))
        clock.shift(60)
        exchange.place_order(_order("filled", amount="0.2"))

        listed = exchange.fetch_orders(SYMBOL)
        later = exchange.fetch_orders(SYMBOL, since=REPLAY_START + timedelta(seconds=60))

    assert [(s.id, s.client_order_id, s.status, s.filled) for s in listed] == [
        ("paper-1", "resting", "open", Decimal("0")),
        ("paper-2", "filled", "closed", Decimal("0.2"))]
    assert [s.id for s in later] == ["paper-2"]
    assert exchange.fetch_orders("ETH/USDT:USDT") == []
    assert exchange.calls["orders"] == 3


def test_faults_held_back_fire_afterwards_untouched():
    exchange = _exchange(faults=[{"on": "any", "kind": "timeout"}])
    with exchange.faults_held():
        exchange.fetch_orders(SYMBOL)
        exchange.fetch_positions()
    with pytest.raises(TransientError, match="read timed out"):
        exchange.fetch_orders(SYMBOL)
