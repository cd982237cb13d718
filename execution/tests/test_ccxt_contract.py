"""Contract tests: the real ``ccxt.bybit`` class against a local Bybit v5 emulator.

The emulator answers with the response shapes ccxt recorded from Bybit and checks
every private request's HMAC signature; faults are scripted per endpoint.
"""

from __future__ import annotations

import decimal
import threading
from decimal import Decimal

import ccxt
import pytest

from execution.exchanges import exchange_for
from execution.exchanges.base import OrderRequest
from execution.exchanges.ccxt_exchange import CcxtExchange, CcxtSettings, reset_ccxt_clients
from execution.exchanges.errors import (
    DuplicateOrderError,
    FatalError,
    InsufficientFundsError,
    OrderNotFound,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from execution.models import OrderStatus
from execution.services import order_place, run_inline
from execution.tests.bybit_emulator import BybitEmulator
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

BTC = "BTC/USDT:USDT"
CREATE = "v5/order/create"
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def emulator():
    with BybitEmulator() as emu:
        yield emu


@pytest.fixture
def bybit_account(emulator, monkeypatch, settings):
    emulator.reset()
    reset_ccxt_clients()
    monkeypatch.setenv("EXCHANGE_EMU_BYBIT_KEY", emulator.api_key)
    monkeypatch.setenv("EXCHANGE_EMU_BYBIT_SECRET", emulator.api_secret)
    settings.EXCHANGE_TIMEOUT_MS = 300  # a held-back answer times out fast
    settings.EXCHANGE_ENABLE_RATE_LIMIT = False
    yield ExchangeAccountFactory(name="bybit-emulator", exchange_id="bybit",
                                 api_base_url=emulator.base_url + "/",
                                 api_key_env="EXCHANGE_EMU_BYBIT_KEY",
                                 api_secret_env="EXCHANGE_EMU_BYBIT_SECRET")
    reset_ccxt_clients()


@pytest.fixture
def bybit(bybit_account):
    return exchange_for(bybit_account)


def _request(cid: str, **kwargs) -> OrderRequest:
    fields = {"symbol": BTC, "side": "buy", "order_type": "market", "amount": Decimal("0.5"),
              "client_order_id": cid, **kwargs}
    return OrderRequest(**fields)


def test_markets_load_once_linear_only_and_skip_the_account_probes(bybit_account, emulator):
    first = exchange_for(bybit_account)
    first.market_rules(BTC)
    exchange_for(bybit_account).market_rules(BTC)  # a new adapter: cached client and markets

    assert [(m, p, q.get("status")) for m, p, q in emulator.state.requests] == [
        ("GET", "v5/asset/coin/query-info", None),
        ("GET", "v5/market/instruments-info", None),
        ("GET", "v5/market/instruments-info", "PreLaunch"),
    ]
    assert emulator.state.requests[1][2] == {"category": "linear", "limit": "1000"}
    assert isinstance(first, CcxtExchange)
    assert first.client.urls["api"] == {key: emulator.base_url for key in first.client.urls["api"]}


def test_each_thread_gets_its_own_client_with_the_markets_already_loaded(bybit_account,
                                                                        emulator):
    here = exchange_for(bybit_account)
    here.market_rules(BTC)
    there = []
    thread = threading.Thread(target=lambda: there.append(exchange_for(bybit_account)))
    thread.start()
    thread.join(timeout=10)

    assert there[0].client is not here.client
    assert there[0].market_rules(BTC) == here.market_rules(BTC)
    assert emulator.calls("v5/market/instruments-info") == 2  # linear + pre-launch, once


def test_create_fetch_lookup_and_cancel_round_trip(bybit, emulator):
    placed = bybit.place_order(_request("cid-market"))
    assert (placed.id, placed.client_order_id, placed.status) == ("emu-000001", "cid-market", None)
    assert emulator.state.requests[-1][2] == {
        "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "orderLinkId": "cid-market",
        "category": "linear", "qty": "0.5"}

    fetched = bybit.fetch_order(placed.id, BTC)
    assert (fetched.status, fetched.filled, fetched.average) == ("closed", Decimal("0.5"),
                                                                 Decimal("50000.5"))
    assert (fetched.fee, fetched.fee_currency) == (Decimal("13.7501375"), "USDT")
    assert bybit.find_order("cid-market", BTC) == fetched
    assert bybit.find_order("cid-unknown", BTC) is None

    resting = bybit.place_order(_request("cid-limit", order_type="limit",
                                         price=Decimal("49000"), reduce_only=True))
    assert emulator.state.requests[-1][2]["reduceOnly"] is True
    assert bybit.fetch_order(resting.id, BTC).status == "open"
    bybit.cancel_order(resting.id, BTC)
    assert bybit.fetch_order(resting.id, BTC).status == "canceled"
    assert bybit.find_order("cid-limit", BTC).status == "canceled"  # found in the history
    with pytest.raises(OrderNotFound, match="too late to cancel") as caught:
        bybit.cancel_order(resting.id, BTC)
    assert caught.value.code == "110001"


def test_market_data_balance_and_positions_are_parsed(bybit, emulator):
    emulator.hold_position("LTCUSDT", Decimal("1.2"), Decimal("64.59947917"))
    ticker = bybit.fetch_ticker(BTC)
    assert (ticker.bid, ticker.ask, ticker.last) == (Decimal("49999.5"), Decimal("50000.5"),
                                                     Decimal("50000"))
    top = bybit.fetch_book_top(BTC)
    assert (top.bid, top.bid_size, top.ask, top.ask_size) == (
        Decimal("49999.5"), Decimal("2"), Decimal("50000.5"), Decimal("2"))
    balance = bybit.fetch_balance()
    assert balance["USDT"].total == Decimal("3322.25896609")
    assert balance["USDT"].free == Decimal("3229.64065465")
    assert balance["BTC"].total == Decimal("0.85581394")
    [position] = bybit.fetch_positions()
    assert (position.symbol, position.side, position.quantity, position.entry_price) == (
        "LTC/USDT:USDT", "long", Decimal("1.2"), Decimal("64.59947917"))
    candles = bybit.fetch_candles(BTC, "1h", limit=3)
    assert [c.close for c in candles] == [Decimal("43488"), Decimal("43376.1"),
                                          Decimal("43352.8")]


def test_precision_comes_from_ccxts_helpers(bybit):
    assert bybit.amount_to_precision(BTC, Decimal("0.12345")) == Decimal("0.123")
    assert bybit.price_to_precision(BTC, Decimal("50000.16")) == Decimal("50000.2")
    assert bybit.min_order_amount(BTC) == Decimal("0.001")
    rules = bybit.market_rules(BTC)
    assert (rules.amount_step, rules.price_step, rules.min_cost) == (
        Decimal("0.001"), Decimal("0.1"), Decimal("5"))


def test_ccxt_calls_leave_the_threads_decimal_rounding_alone(bybit):
    """ccxt sets ROUND_HALF_UP on the thread's context; our Decimals keep half-even."""
    assert decimal.getcontext().rounding == decimal.ROUND_HALF_EVEN
    bybit.amount_to_precision(BTC, Decimal("0.12345"))
    bybit.fetch_ticker(BTC)
    assert decimal.getcontext().rounding == decimal.ROUND_HALF_EVEN
    assert f"{Decimal('42.5'):.0f}" == "42"


def test_a_wrong_secret_is_refused_by_the_signature_check(bybit_account, emulator, monkeypatch):
    monkeypatch.setenv("EXCHANGE_EMU_BYBIT_SECRET", "not-the-secret")
    exchange = exchange_for(bybit_account)
    with pytest.raises(FatalError) as caught:
        exchange.fetch_balance()
    assert caught.value.code == "10004"
    assert "not-the-secret" not in str(caught.value)
    assert "not-the-secret" not in repr(CcxtSettings.from_account(bybit_account))


@pytest.mark.parametrize(("kind", "code", "ours", "ccxt_class", "our_code"), [
    ("http500", 0, TransientError, ccxt.ExchangeNotAvailable, "ExchangeNotAvailable"),
    ("http429", 0, RateLimitedError, ccxt.RateLimitExceeded, "RateLimitExceeded"),
    ("retcode", 10006, RateLimitedError, ccxt.RateLimitExceeded, "10006"),
    ("timeout", 0, TransientError, ccxt.RequestTimeout, "RequestTimeout"),
    ("drop", 0, TransientError, ccxt.NetworkError, "NetworkError"),
    ("retcode", 110007, InsufficientFundsError, ccxt.InsufficientFunds, "110007"),
    ("retcode", 10004, FatalError, ccxt.AuthenticationError, "10004"),
    ("retcode", 10016, TransientError, ccxt.ExchangeError, "10016"),
    ("retcode", 110072, DuplicateOrderError, ccxt.InvalidOrder, "110072"),
])
def test_each_bybit_error_maps_to_our_exception(bybit, emulator, kind, code, ours, ccxt_class,
                                                our_code):
    bybit.market_rules(BTC)
    emulator.fail_next(CREATE, kind, code=code, message="scripted")
    with pytest.raises(ours) as caught:
        bybit.place_order(_request(f"cid-{kind}-{code}"))
    assert type(caught.value) is ours
    assert type(caught.value.__cause__) is ccxt_class
    assert caught.value.code == our_code


def test_an_unknown_order_and_a_late_cancel_are_order_not_found(bybit, emulator):
    bybit.market_rules(BTC)
    emulator.fail_next("v5/order/cancel", "retcode", code=110001,
                       message="order not exists or too late to cancel")
    with pytest.raises(OrderNotFound):
        bybit.cancel_order("emu-missing", BTC)
    with pytest.raises(OrderNotFound):
        bybit.fetch_order("emu-missing", BTC)


def test_a_duplicate_is_a_rejection_that_means_the_order_exists(bybit):
    bybit.place_order(_request("cid-dup"))
    with pytest.raises(DuplicateOrderError, match="OrderLinkedID is duplicate") as caught:
        bybit.place_order(_request("cid-dup"))
    assert isinstance(caught.value, RejectedError)


# --- the pipeline through real ccxt -------------------------------------------------

@pytest.fixture
def bybit_strategy(bybit_account):
    return StrategyFactory(name="bybit-strategy", account=bybit_account)


def _place(account, strategy, sleep, **kwargs):
    fields = {"account": account, "strategy": strategy, "symbol": BTC, "side": "buy",
              "quantity": Decimal("0.5"), **kwargs}
    return order_place(drive=run_inline(sleep=sleep), **fields)


def test_the_pipeline_places_and_verifies_a_market_order(bybit_account, bybit_strategy, emulator,
                                                         sleep):
    order = _place(bybit_account, bybit_strategy, sleep)

    assert order.status == OrderStatus.FILLED
    assert (order.exchange_order_id, order.filled_quantity, order.average_fill_price) == (
        "emu-000001", Decimal("0.5"), Decimal("50000.5"))
    assert order.fee == Decimal("13.7501375")
    assert order.slippage_percent == Decimal("0.001")
    assert [p for _, p, _ in emulator.state.requests[3:]] == [
        "v5/market/orderbook", CREATE, "v5/order/realtime"]
    assert order.position.entry_price == Decimal("50000.5")


@pytest.mark.parametrize("fault", ["timeout_after_accept", "drop_after_accept",
                                   "http429_after_accept", "http500_after_accept"])
def test_a_lost_answer_from_bybit_leaves_exactly_one_order(bybit_account, bybit_strategy,
                                                           emulator, sleep, fault):
    emulator.fail_next(CREATE, fault)

    order = _place(bybit_account, bybit_strategy, sleep)

    assert len(emulator.orders_with_link_id(order.client_order_id)) == 1
    assert emulator.calls(CREATE) == 1
    assert sleep.delays == [1.0]
    assert order.status == OrderStatus.FILLED
    assert order.exchange_order_id == "emu-000001"


def test_a_lagging_listing_then_110072_still_leaves_one_order(bybit_account, bybit_strategy,
                                                              emulator, sleep):
    emulator.fail_next(CREATE, "timeout_after_accept")
    emulator.fail_next("v5/order/realtime", "empty")
    emulator.fail_next("v5/order/history", "empty")

    order = _place(bybit_account, bybit_strategy, sleep)

    assert emulator.calls(CREATE) == 2  # the resend was refused as a duplicate
    assert len(emulator.orders_with_link_id(order.client_order_id)) == 1
    assert order.status == OrderStatus.FILLED


def test_system_errors_are_retried_after_1_and_2_seconds(bybit_account, bybit_strategy, emulator,
                                                         sleep):
    emulator.fail_next(CREATE, "retcode", code=10016, message="System error. Please try again "
                       "later.", times=2)

    order = _place(bybit_account, bybit_strategy, sleep)

    assert sleep.delays == [1.0, 2.0]
    assert order.status == OrderStatus.FILLED
    assert emulator.calls(CREATE) == 3
    assert len(emulator.state.orders) == 1


def test_insufficient_funds_is_not_retried(bybit_account, bybit_strategy, emulator, sleep):
    emulator.fail_next(CREATE, "retcode", code=110007, message="ab not enough for new order")

    order = _place(bybit_account, bybit_strategy, sleep)

    assert order.status == OrderStatus.REJECTED
    assert order.error_code == "110007"
    assert '"retMsg": "ab not enough for new order"' in order.last_error
    assert sleep.delays == []
    assert emulator.calls(CREATE) == 1


def test_a_resting_order_is_cancelled_at_the_timeout_and_verified(bybit_account, bybit_strategy,
                                                                 emulator, sleep):
    order = _place(bybit_account, bybit_strategy, sleep, order_type="limit",
                   price=Decimal("49000"))

    assert order.status == OrderStatus.CANCELLED
    assert order.timed_out is True
    assert emulator.calls("v5/order/cancel") == 1
    assert emulator.state.orders[order.exchange_order_id]["orderStatus"] == "Cancelled"
    assert sum(sleep.delays) == 30


# --- orders in doubt through real ccxt ----------------------------------------------

REALTIME, HISTORY = "v5/order/realtime", "v5/order/history"


@pytest.fixture
def one_retry_strategy(bybit_account):
    return StrategyFactory(name="bybit-one-retry", account=bybit_account,
                           live_trading={"orderExecution": {"maxRetries": 1}})


def _emergency_close(strategy, sleep):
    from execution.services import action_process
    from lifecycle.services import position_request_close
    from tradingsite.testing.factories import PositionFactory

    position = PositionFactory(strategy=strategy, symbol=BTC, quantity=Decimal("0.4"),
                               entry_price=Decimal("49000"))
    action, _ = position_request_close(position=position, reason="timeout", actor="timeout")
    return position, action_process(action.pk, drive=run_inline(sleep=sleep))


def test_bybit_a_close_whose_create_timed_out_is_not_replaced_after_one_empty_listing(
        bybit_account, one_retry_strategy, emulator, sleep):
    from execution.models import Order

    emulator.fail_next(CREATE, "timeout_after_accept")
    emulator.fail_next(REALTIME, "http500", times=2)
    emulator.fail_next(REALTIME, "empty")
    emulator.fail_next(HISTORY, "empty")

    position, action = _emergency_close(one_retry_strategy, sleep)

    assert emulator.calls(CREATE) == 1
    assert [o["orderLinkId"] for o in emulator.state.orders.values()] == [f"close-{action.pk}"]
    order = Order.objects.get(position=position)
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, "emu-000001", Decimal("0.4"))
    assert action.state == "done"


def test_bybit_a_listing_lagging_twice_at_the_order_timeout_leaves_one_order(
        bybit_account, one_retry_strategy, emulator, sleep):
    from execution.models import Order

    emulator.fail_next(CREATE, "timeout_after_accept")
    emulator.fail_next(REALTIME, "http500", times=3)  # 1 s, 11 s, 21 s
    emulator.fail_next(REALTIME, "empty", times=2)  # 31 s (timed out), 41 s
    emulator.fail_next(HISTORY, "empty", times=2)

    position, action = _emergency_close(one_retry_strategy, sleep)

    assert emulator.calls(CREATE) == 1
    [row] = emulator.state.orders.values()
    order = Order.objects.get(position=position)
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, row["orderId"], Decimal(row["cumExecQty"]))
    assert row["orderStatus"] == "Filled"
    assert sleep.delays == [1.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    assert action.state == "done"


def test_bybit_a_limit_entry_in_doubt_at_its_timeout_is_cancelled_on_the_exchange(
        bybit_account, one_retry_strategy, emulator, sleep):
    emulator.fail_next(CREATE, "timeout_after_accept")
    emulator.fail_next(REALTIME, "http500", times=2)
    emulator.fail_next(REALTIME, "empty")
    emulator.fail_next(HISTORY, "empty")

    order = _place(bybit_account, one_retry_strategy, sleep, order_type="limit",
                   price=Decimal("49000"))

    [row] = emulator.state.orders.values()
    assert row["orderStatus"] == "Cancelled"
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.CANCELLED, row["orderId"], Decimal("0"))


def test_bybit_a_truncated_200_reply_is_resolved_by_the_client_id_lookup(
        bybit_account, bybit_strategy, emulator, sleep):
    emulator.fail_next(CREATE, "truncated_after_accept")

    order = _place(bybit_account, bybit_strategy, sleep)

    assert emulator.calls(CREATE) == 1
    assert [p for _, p, q in emulator.state.requests if q.get("orderId") == ""] == []
    assert (order.status, order.exchange_order_id, order.filled_quantity) == (
        OrderStatus.FILLED, "emu-000001", Decimal("0.5"))
    assert sleep.delays == [1.0]


def test_bybit_a_request_processed_after_the_client_gave_up_leaves_one_order(
        bybit_account, bybit_strategy, emulator, sleep):
    emulator.delayed_processed.clear()
    emulator.fail_next(CREATE, "delayed")

    order = _place(bybit_account, bybit_strategy, sleep)

    assert emulator.delayed_processed.wait(timeout=10)  # the late original arrived too
    assert len(emulator.orders_with_link_id(order.client_order_id)) == 1
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, Decimal("0.5"))
    [row] = emulator.state.orders.values()
    assert order.exchange_order_id == row["orderId"]


# --- listings, positions and the emulator's order faults ------------------------------

def test_every_order_of_a_symbol_is_listed_across_pages_open_and_final(bybit, emulator):
    for n in range(55):  # three pages of the history at Bybit's 50 a page... and 20 by default
        bybit.place_order(_request(f"cid-{n:02d}", amount=Decimal("0.001")))
    resting = bybit.place_order(_request("cid-rest", order_type="limit", price=Decimal("40000")))

    listed = bybit.fetch_orders(BTC)

    assert sorted(s.client_order_id for s in listed) == sorted(
        [f"cid-{n:02d}" for n in range(55)] + ["cid-rest"])
    assert {s.id: s.status for s in listed}[resting.id] == "open"
    assert emulator.calls("v5/order/history") == 2  # 50 + 5, one cursor followed
    assert emulator.calls("v5/order/realtime") == 1


def test_positions_are_what_the_fills_built_and_reduce_only_never_flips_one(bybit, emulator):
    bybit.place_order(_request("open", amount=Decimal("0.5")))
    bybit.place_order(_request("close", side="sell", amount=Decimal("0.8"), reduce_only=True))
    assert bybit.fetch_positions() == []  # 0.5 closed; the other 0.3 reduced nothing
    bybit.place_order(_request("short", side="sell", amount=Decimal("0.2")))

    [position] = bybit.fetch_positions()

    assert (position.symbol, position.side, position.quantity, position.entry_price) == (
        BTC, "short", Decimal("0.2"), Decimal("49999.5"))
    emulator.state.strict_reduce_only = True
    with pytest.raises(RejectedError, match="current position is zero") as caught:
        bybit.place_order(_request("bad", amount=Decimal("0.3"), reduce_only=True))
    assert caught.value.code == "110017"


def test_order_behaviour_faults_stay_open_partial_fill_and_fill_on_cancel(bybit, emulator):
    emulator.fail_next(CREATE, "stay_open")
    emulator.fail_next(CREATE, "partial_fill", ratio="0.4")
    emulator.fail_next("v5/order/cancel", "fill_on_cancel", ratio="0.5")

    resting = bybit.place_order(_request("rest", amount=Decimal("0.5")))
    partial = bybit.place_order(_request("part", amount=Decimal("0.5")))

    assert (bybit.fetch_order(resting.id, BTC).status, bybit.fetch_order(resting.id, BTC).filled
            ) == ("open", Decimal("0"))
    assert bybit.fetch_order(partial.id, BTC).filled == Decimal("0.2")
    bybit.cancel_order(partial.id, BTC)  # half of the 0.3 left fills first
    cancelled = bybit.fetch_order(partial.id, BTC)
    assert (cancelled.status, cancelled.filled) == ("canceled", Decimal("0.35"))
    assert emulator.position_size("BTCUSDT") == Decimal("0.35")


def test_a_fill_on_cancel_of_everything_left_makes_the_cancel_too_late(bybit, emulator):
    emulator.fail_next(CREATE, "stay_open")
    emulator.fail_next("v5/order/cancel", "fill_on_cancel", ratio="1")
    resting = bybit.place_order(_request("rest", amount=Decimal("0.5")))

    with pytest.raises(OrderNotFound, match="too late to cancel"):
        bybit.cancel_order(resting.id, BTC)
    assert bybit.fetch_order(resting.id, BTC).status == "closed"


def test_a_delayed_accept_is_processed_on_the_emulators_clock_not_before(bybit, emulator):
    import time_machine

    with time_machine.travel(1_770_000_000, tick=False) as clock:
        emulator.fail_next(CREATE, "delayed_accept", seconds=20)
        with pytest.raises(TransientError):
            bybit.place_order(_request("late"))
        clock.shift(19)
        assert bybit.find_order("late", BTC) is None
        clock.shift(1)
        assert bybit.find_order("late", BTC).filled == Decimal("0.5")


def test_a_matched_fault_fires_only_on_requests_with_those_parameters(bybit, emulator):
    placed = bybit.place_order(_request("seen"))
    emulator.fail_next("v5/order/realtime", "empty", match={"orderLinkId": True}, times=1)

    assert [s.client_order_id for s in bybit.fetch_orders(BTC)] == ["seen"]  # a listing
    assert bybit.find_order("seen", BTC) is not None  # history still has it
    assert emulator.state.faults[-1].times == 0
    with emulator.faults_held():
        emulator.fail_next("v5/order/realtime", "http500")
        assert bybit.fetch_order(placed.id, BTC).id == placed.id
    assert emulator.state.faults[-1].times == 1


def test_a_resting_limit_order_fills_at_its_price_when_the_market_crosses_it(bybit, emulator):
    resting = bybit.place_order(_request("dip", order_type="limit", price=Decimal("49000")))
    emulator.set_price("BTCUSDT", Decimal("48900"))

    filled = bybit.fetch_order(resting.id, BTC)

    assert (filled.status, filled.filled, filled.average) == ("closed", Decimal("0.5"),
                                                              Decimal("49000"))
