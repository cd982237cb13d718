"""Contract tests of the live account truth: the real ``ccxt.pro.bybit`` against the emulator.

The emulator speaks Bybit v5's websockets on its own port (public tickers, private
``order``/``execution``/``position`` after the ``auth`` op) next to the REST API.
The stream owner's threads are real; tests wait on its progress (bounded), never sleep.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.exchanges import exchange_for
from execution.exchanges.ccxt_exchange import CcxtSettings, reset_ccxt_clients
from execution.exchanges.errors import FatalError
from execution.exchanges.streams import CcxtStream, stream_factory
from execution.models import AccountStream, Order, OrderStatus
from execution.pipeline import order_submit
from execution.services import order_advance, run_inline
from execution.streams import AccountSync, stream_lease_acquire
from execution.tests.bybit_emulator import BybitEmulator
from lifecycle.models import Position, PositionFill, PositionSource, PositionState, Trade
from lifecycle.services import position_open, timeout_pass_run
from risk.models import RiskAlert
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory
from tradingsite.testing.threads import row_beside_writers as fetch

BTC = "BTC/USDT:USDT"
WAIT = 20.0


@pytest.fixture(scope="module")
def emulator():
    with BybitEmulator() as emu:
        yield emu


@pytest.fixture
def bybit_account(emulator, monkeypatch, settings, db):
    emulator.reset()
    reset_ccxt_clients()
    monkeypatch.setenv("EXCHANGE_EMU_BYBIT_KEY", emulator.api_key)
    monkeypatch.setenv("EXCHANGE_EMU_BYBIT_SECRET", emulator.api_secret)
    settings.EXCHANGE_TIMEOUT_MS = 3000
    settings.EXCHANGE_ENABLE_RATE_LIMIT = False
    yield ExchangeAccountFactory(name="bybit-live", exchange_id="bybit",
                                 api_base_url=emulator.base_url + "/",
                                 api_key_env="EXCHANGE_EMU_BYBIT_KEY",
                                 api_secret_env="EXCHANGE_EMU_BYBIT_SECRET",
                                 live_trading={"accountSync": {"reconcileIntervalSeconds": 5}})
    reset_ccxt_clients()


@pytest.fixture
def strategy(bybit_account):
    return StrategyFactory(name="bybit-trend", account=bybit_account)


@pytest.fixture
def owner():
    started: list[AccountSync] = []

    def start(account) -> AccountSync:
        assert stream_lease_acquire(account, "test:1:bybit")
        sync = AccountSync(account.pk, owner="test:1:bybit")
        sync.start()
        started.append(sync)
        return sync

    yield start
    for sync in started:
        sync.stop()


# --- the stream session itself ------------------------------------------------------------------

@pytest.mark.django_db
def test_the_real_ccxt_pro_bybit_authenticates_and_hears_order_execution_position_and_ticker(
        bybit_account, emulator):
    bybit = exchange_for(bybit_account)
    bybit.market_rules(BTC)  # markets loaded once, handed to the stream client
    factory, why = stream_factory(bybit_account, bybit)
    assert why == ""

    async def session():
        stream = factory()
        await stream.open()
        try:
            orders = asyncio.ensure_future(stream.orders())
            trades = asyncio.ensure_future(stream.trades())
            positions = asyncio.ensure_future(stream.positions())
            tickers = asyncio.ensure_future(stream.tickers([BTC]))
            await asyncio.sleep(0)  # the subscriptions go out
            first_ticker = await asyncio.wait_for(tickers, 5)
            while emulator.stream_clients() < 1 or len(emulator.ws_messages) < 5:
                await asyncio.sleep(0.02)  # the emulator registers the subscriptions
            await asyncio.to_thread(emulator.trade_elsewhere, "BTCUSDT", "Buy", "0.25")
            return (first_ticker, await asyncio.wait_for(orders, 5),
                    await asyncio.wait_for(trades, 5), await asyncio.wait_for(positions, 5))
        finally:
            await stream.close()

    [ticker], [order], [trade], [position] = asyncio.run(session())
    assert (ticker.symbol, ticker.mark, ticker.bid, ticker.ask) == (
        BTC, Decimal("50000"), Decimal("49999.5"), Decimal("50000.5"))
    assert (order.symbol, order.side, order.status, order.filled, order.average) == (
        BTC, "buy", "closed", Decimal("0.25"), Decimal("50000.5"))
    assert (trade.order_id, trade.amount, trade.price, trade.side) == (
        order.id, Decimal("0.25"), Decimal("50000.5"), "buy")
    assert (position.symbol, position.side, position.quantity, position.entry_price) == (
        BTC, "long", Decimal("0.25"), Decimal("50000.5"))
    ops = [m.get("op") for m in emulator.ws_messages]
    assert ops.count("auth") == 1 and "subscribe" in ops


@pytest.mark.django_db
def test_a_wrong_secret_is_refused_by_the_private_stream(bybit_account, emulator, monkeypatch):
    exchange_for(bybit_account).market_rules(BTC)  # markets cached: the stream asks no REST
    monkeypatch.setenv("EXCHANGE_EMU_BYBIT_SECRET", "not-the-secret")
    stream = CcxtStream(CcxtSettings.from_account(bybit_account))

    async def session():
        try:
            await stream.open()
        finally:
            await stream.close()

    with pytest.raises(FatalError, match="Authentication failed"):
        asyncio.run(session())


def test_an_exchange_without_known_websocket_urls_behind_a_replaced_url_gets_no_stream(db):
    account = ExchangeAccountFactory(name="okx-proxy", exchange_id="okx",
                                     api_base_url="https://proxy.example.com")
    assert stream_factory(account, None) == (
        None, "websocket URLs under api_base_url unknown for this exchange")


# --- the owner against the emulator ---------------------------------------------------------------

def limit_entry(strategy, price: str, quantity: str) -> Order:
    order = order_submit(account=strategy.account, strategy=strategy, symbol=BTC, side="buy",
                         quantity=Decimal(quantity), order_type="limit", price=Decimal(price))
    step = order_advance(order)
    assert step.order.status == OrderStatus.OPEN, step.order.last_error
    return step.order


@pytest.mark.django_db(transaction=True)
def test_two_fills_while_the_stream_is_down_are_applied_once_after_the_reconnect(
        strategy, bybit_account, emulator, owner):
    first, second = limit_entry(strategy, "49900", "0.5"), limit_entry(strategy, "49800", "0.3")
    sync = owner(bybit_account)
    assert sync.wait_for(lambda: sync.sessions == 1 and sync.reconciles >= 1, WAIT)

    emulator.drop_streams()
    assert sync.wait_for(lambda: not sync.connected.is_set(), WAIT)
    emulator.fill_order(first.exchange_order_id)
    emulator.fill_order(second.exchange_order_id)
    assert fetch(Order, first.pk).status == OrderStatus.OPEN  # nobody heard it
    reconciles = sync.reconciles
    emulator.resume_streams()

    assert sync.wait_for(lambda: sync.sessions == 2 and sync.reconciles > reconciles, WAIT)
    assert [(o.status, o.filled_quantity) for o in Order.objects.order_by("pk")] == [
        (OrderStatus.FILLED, Decimal("0.5")), (OrderStatus.FILLED, Decimal("0.3"))]
    assert sorted(PositionFill.objects.values_list("fill_key", flat=True)) == sorted(
        [f"{first.client_order_id}:0.5", f"{second.client_order_id}:0.3"])
    assert sorted(Position.objects.values_list("quantity", "entry_price")) == [
        (Decimal("0.3"), Decimal("49800")), (Decimal("0.5"), Decimal("49900"))]
    assert AccountStream.objects.get(account=bybit_account).reconnects == 1


@pytest.mark.django_db(transaction=True)
def test_a_position_opened_outside_is_alerted_then_adopted_and_closed_at_its_holding_limit(
        strategy, bybit_account, emulator, owner):
    supervisor = StrategyFactory(name="bybit-supervision", account=bybit_account,
                                 supervises_account=True, live_trading={
                                     "lifecycle": {"maxHoldingTimeMinutes": 30,
                                                   "warningThresholdMinutes": 20}})
    sync = owner(bybit_account)
    assert sync.wait_for(lambda: sync.reconciles >= 1, WAIT)

    emulator.trade_elsewhere("BTCUSDT", "Buy", "0.2")  # by hand, on the exchange's site
    subject = "bybit-live BTC/USDT:USDT"
    assert sync.wait_for(lambda: RiskAlert.objects.filter(
        kind="untracked_position", subject=subject).exists(), WAIT)
    alert = RiskAlert.objects.get(kind="untracked_position", subject=subject)
    assert (alert.severity, alert.position_id) == ("CRITICAL", None)
    assert alert.message == ("bybit-live: long 0.2 BTC/USDT:USDT on the exchange is not "
                             "supervised (adoptExternalPositions is off): no holding limit or "
                             "health applies to it")
    assert not Position.objects.exists()

    bybit_account.live_trading = {"accountSync": {"reconcileIntervalSeconds": 5,
                                                  "adoptExternalPositions": True}}
    bybit_account.save()
    assert sync.wait_for(lambda: Position.objects.exists(), WAIT)
    sync.stop()
    adopted = Position.objects.get()
    opened_on_exchange = emulator.position_opened_ms("BTCUSDT")
    assert (adopted.strategy, adopted.source, adopted.side, adopted.quantity,
            adopted.entry_price) == (supervisor, PositionSource.RECONCILE, "long",
                                     Decimal("0.2"), Decimal("50000.5"))
    assert int(adopted.opened_at.timestamp() * 1000) == opened_on_exchange
    assert RiskAlert.objects.get(kind="untracked_position", subject=subject).severity == (
        "WARNING")

    # Its holding limit counts from the exchange's opening time; the close goes to Bybit.
    with time_machine.travel(adopted.opened_at + timedelta(minutes=30, seconds=1), tick=False):
        result = timeout_pass_run()
        assert (result.warned, result.timed_out, result.close_actions) == (1, 1, 1)
        from execution.models import Action
        from execution.services import action_process

        action_process(Action.objects.get().pk, drive=run_inline(sleep=lambda s: None))
    closed = fetch(Position, adopted.pk)
    assert (closed.state, closed.close_reason) == (PositionState.CLOSED, "timeout")
    assert Trade.objects.get(position=closed).exit_price == Decimal("49999.5")
    assert emulator.position_size("BTCUSDT") == 0


@pytest.mark.django_db(transaction=True)
def test_a_tracked_position_the_exchange_shows_flat_is_closed_external_at_the_exchanges_exit(
        strategy, bybit_account, emulator, owner):
    entry = order_submit(account=bybit_account, strategy=strategy, symbol=BTC, side="buy",
                         quantity=Decimal("0.4"))
    entry = run_inline(sleep=lambda s: None)(entry)
    position = entry.position
    assert (position.quantity, position.entry_price) == (Decimal("0.4"), Decimal("50000.5"))
    sync = owner(bybit_account)
    assert sync.wait_for(lambda: sync.reconciles >= 1, WAIT)
    assert fetch(Position, position.pk).state == PositionState.OPEN  # in line: nothing done

    emulator.set_price("BTCUSDT", Decimal("51000"))
    emulator.trade_elsewhere("BTCUSDT", "Sell", "0.4")  # closed by hand at 50999.5

    assert sync.wait_for(lambda: fetch(Position, position.pk).state == PositionState.CLOSED,
                         WAIT)
    closed = fetch(Position, position.pk)
    trade = Trade.objects.get(position=closed)
    assert (closed.close_reason, trade.exit_reason, trade.exit_price) == (
        "external", "external", Decimal("50999.5"))
    # (50999.5 − 50000.5) × 0.4 − fees of both sides at 0.055 %
    entry_fee = Decimal("0.4") * Decimal("50000.5") * Decimal("0.00055")
    exit_fee = Decimal("0.4") * Decimal("50999.5") * Decimal("0.00055")
    assert trade.pnl == (Decimal("399.6") - entry_fee - exit_fee).quantize(Decimal("1e-10"))
    alert = RiskAlert.objects.get(kind="external_close")
    assert alert.message == (f"bybit-live BTC/USDT:USDT: flat on the exchange; closed outside "
                             f"the platform: #{position.pk} at 50999.5 (from 1 exchange trade(s))")


@pytest.mark.django_db(transaction=True)
def test_marks_come_from_the_websocket_tickers(strategy, bybit_account, emulator, owner):
    position = position_open(strategy=strategy, symbol=BTC, side="long", quantity=Decimal("1"),
                             entry_price=Decimal("50000"))
    emulator.hold_position("BTCUSDT", Decimal("1"), Decimal("50000"))
    sync = owner(bybit_account)
    assert sync.wait_for(lambda: sync.connected.is_set() and emulator.stream_clients("public"),
                         WAIT)
    rest_calls = emulator.calls("v5/market/tickers")

    emulator.set_price("BTCUSDT", Decimal("48000"))

    assert sync.wait_for(lambda: fetch(Position, position.pk).last_price == Decimal("48000"),
                         WAIT)
    assert emulator.calls("v5/market/tickers") == rest_calls  # not read over REST
