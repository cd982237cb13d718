"""One stream owner per account, the keyed fill path, reconnects and marks (execution.streams).

The owner's threads are real (the paper exchange's stream, the account's event loop);
tests wait on the owner's progress with a bounded wait, never sleep.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import OperationalError
from django.utils import timezone

from execution import streams
from execution.exchanges.base import OrderSnapshot, Ticker
from execution.exchanges.paper import paper_exchange_for, reset_paper_exchanges
from execution.models import AccountStream, Order, OrderPurpose, OrderStatus
from execution.pipeline import order_submit
from execution.services import order_advance
from execution.streams import (
    AccountSync,
    StreamSupervisor,
    account_reconcile,
    order_apply_exchange_view,
    stream_lease_acquire,
    stream_lease_release,
    stream_lease_renew,
)
from lifecycle.models import Position, PositionFill, PositionState
from lifecycle.services import position_begin_close, position_open
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory
from tradingsite.testing.threads import row_beside_writers as fetch

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
WAIT = 15.0  # seconds a test waits for the owner at most


def paper_config(**extra):
    return {"feed": {"type": "manual", "prices": {BTC: "50000", ETH: "2500"}},
            "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
            "book": {"spreadPercent": 0.02, "levelNotional": 5000000, "levelStepPercent": 0.01},
            "markets": {BTC: {"amountStep": "0.001", "priceStep": "0.1", "minAmount": "0.001"},
                        ETH: {"amountStep": "0.01", "priceStep": "0.01", "minAmount": "0.01"}},
            **extra}


@pytest.fixture(autouse=True)
def _fresh_books():
    reset_paper_exchanges()
    yield
    reset_paper_exchanges()


@pytest.fixture
def account(db):
    return ExchangeAccountFactory(name="stream-paper", paper_config=paper_config(),
                                  starting_capital=Decimal("100000"))


@pytest.fixture
def strategy(account):
    return StrategyFactory(name="stream-strategy", account=account)


def limit_entry(strategy, price: str, quantity: str = "0.5") -> Order:
    """A buy limit order resting on the paper book (placed by one pipeline step)."""
    order = order_submit(account=strategy.account, strategy=strategy, symbol=BTC, side="buy",
                         quantity=Decimal(quantity), order_type="limit", price=Decimal(price))
    step = order_advance(order)
    assert step.order.status == OrderStatus.OPEN, step.order.last_error
    return step.order


# --- the lease ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_one_owner_holds_the_lease_until_it_runs_out(account):
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as clock:
        assert stream_lease_acquire(account, "host:1:a")
        assert not stream_lease_acquire(account, "host:2:b")
        assert stream_lease_acquire(account, "host:1:a")  # the owner renews by acquiring
        # default reconcile interval 60 s → a 20 s lease
        clock.move_to(start + timedelta(seconds=19))
        assert not stream_lease_acquire(account, "host:2:b")
        clock.move_to(start + timedelta(seconds=20, microseconds=1))
        assert stream_lease_acquire(account, "host:2:b")
        assert not stream_lease_renew(account, "host:1:a")
        row = AccountStream.objects.get(account=account)
        assert (row.owner, row.lease_until, row.takeovers) == (
            "host:2:b", start + timedelta(seconds=40, microseconds=1), 2)
        stream_lease_release(account.pk, "host:1:a")  # not the owner: nothing happens
        assert AccountStream.objects.get(account=account).owner == "host:2:b"
        stream_lease_release(account.pk, "host:2:b")
        assert stream_lease_acquire(account, "host:3:c")


@pytest.mark.django_db
def test_the_lease_lasts_a_third_of_the_reconcile_interval(account):
    account.live_trading = {"accountSync": {"reconcileIntervalSeconds": 9}}
    account.save()
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        stream_lease_acquire(account, "host:1:a")
    assert AccountStream.objects.get(account=account).lease_until == start + timedelta(seconds=3)


# --- the keyed fill path --------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_fill_seen_by_the_stream_and_by_rest_is_applied_once(strategy, account):
    position = position_open(strategy=strategy, symbol=BTC, side="long",
                             quantity=Decimal("0.5"), entry_price=Decimal("50000"))
    position_begin_close(position, reason="manual", actor="test")
    paper = paper_exchange_for(account)
    paper.configure(paper.config.__class__(**{**paper.config.__dict__}))  # keep the config
    close = order_submit(account=account, strategy=strategy, symbol=BTC, side="sell",
                         quantity=Decimal("0.5"), order_type="limit", price=Decimal("50100"),
                         purpose=OrderPurpose.CLOSE, position=position, reduce_only=True)
    close = order_advance(close).order
    assert close.status == OrderStatus.OPEN
    paper.set_price(BTC, Decimal("50200"))  # the limit is crossed: filled on the exchange
    [snapshot] = [o.snapshot("USDT") for o in paper.orders.values()
                  if o.client_order_id == close.client_order_id]

    by_stream = order_apply_exchange_view(fetch(Order, close.pk), snapshot, source="stream")
    by_rest = order_apply_exchange_view(fetch(Order, close.pk), snapshot, source="reconcile")
    report = account_reconcile(account, paper)

    assert by_stream == "applied (filled, +0.5)"
    assert (by_rest, report.orders_checked) == ("final already", 0)
    fills = list(PositionFill.objects.filter(position=position).values_list("fill_key",
                                                                            "quantity"))
    assert fills == [(f"{close.client_order_id}:0.5", Decimal("0.500000000000"))]
    position = fetch(Position, position.pk)
    assert (position.state, position.quantity) == (PositionState.CLOSED, Decimal("0"))


@pytest.mark.django_db
def test_an_echo_of_the_known_state_writes_nothing(strategy):
    order = limit_entry(strategy, "49000")
    version = order.version
    echo = OrderSnapshot(id=order.exchange_order_id, client_order_id=order.client_order_id,
                         symbol=BTC, side="buy", order_type="limit", status="open",
                         amount=Decimal("0.5"))
    assert order_apply_exchange_view(order, echo, source="stream") == "nothing new"
    assert fetch(Order, order.pk).version == version


@pytest.mark.django_db
def test_an_order_a_worker_is_sending_is_left_to_it(strategy):
    order = limit_entry(strategy, "49000")
    Order.objects.filter(pk=order.pk).update(lease_holder="worker:9",
                                             lease_until=datetime(2100, 1, 1, tzinfo=UTC))
    filled = OrderSnapshot(id=order.exchange_order_id, client_order_id=order.client_order_id,
                           symbol=BTC, side="buy", order_type="limit", status="closed",
                           amount=Decimal("0.5"), filled=Decimal("0.5"),
                           average=Decimal("49000"))
    assert order_apply_exchange_view(fetch(Order, order.pk), filled, source="stream") == (
        "left to the worker holding it")
    assert fetch(Order, order.pk).status == OrderStatus.OPEN


# --- the owner's threads ------------------------------------------------------------------------

def start_owner(account, owner: str = "test:1:a") -> AccountSync:
    assert stream_lease_acquire(account, owner)
    sync = AccountSync(account.pk, owner=owner)
    sync.start()
    return sync


@pytest.fixture
def owners():
    started: list = []
    yield started
    for owner in started:
        owner.stop()


@pytest.mark.django_db(transaction=True)
def test_a_stream_that_drops_while_two_fills_happen_applies_both_once_after_reconnecting(
        strategy, account, owners):
    first, second = limit_entry(strategy, "49900"), limit_entry(strategy, "49800", "0.3")
    paper = paper_exchange_for(account)
    sync = start_owner(account)
    owners.append(sync)
    assert sync.wait_for(lambda: sync.sessions == 1 and sync.reconciles >= 1, WAIT)

    paper.drop_streams()
    assert sync.wait_for(lambda: not sync.connected.is_set(), WAIT)
    paper.set_price(BTC, Decimal("49700"))  # both limits cross while nobody listens
    assert [o.status for o in paper.orders.values()] == ["closed", "closed"]
    assert fetch(Order, first.pk).status == OrderStatus.OPEN  # the stream heard nothing
    reconciles = sync.reconciles
    paper.resume_streams()

    assert sync.wait_for(lambda: sync.sessions == 2 and sync.reconciles > reconciles, WAIT)
    first, second = fetch(Order, first.pk), fetch(Order, second.pk)
    assert (first.status, first.filled_quantity) == (OrderStatus.FILLED, Decimal("0.5"))
    assert (second.status, second.filled_quantity) == (OrderStatus.FILLED, Decimal("0.3"))
    assert sorted(PositionFill.objects.values_list("fill_key", flat=True)) == sorted(
        [f"{first.client_order_id}:0.5", f"{second.client_order_id}:0.3"])
    assert Position.objects.count() == 2
    row = AccountStream.objects.get(account=account)
    assert (row.mode, row.connected, row.reconnects) == ("stream", True, 1)
    assert row.last_reconcile["orders_applied"] == [
        f"{first.client_order_id}: applied (filled, +0.5)",
        f"{second.client_order_id}: applied (filled, +0.3)"]


@pytest.mark.django_db(transaction=True)
def test_a_fill_pushed_by_the_stream_is_applied_at_once(strategy, account, owners):
    order = limit_entry(strategy, "49900")
    paper = paper_exchange_for(account)
    sync = start_owner(account)
    owners.append(sync)
    assert sync.wait_for(lambda: sync.reconciles >= 1, WAIT)

    paper.set_price(BTC, Decimal("49850"))

    assert sync.wait_for(lambda: fetch(Order, order.pk).status == OrderStatus.FILLED, WAIT)
    assert PositionFill.objects.filter(fill_key=f"{order.client_order_id}:0.5").count() == 1
    assert sync.reconciles == 1  # the stream, not a reconcile, brought it


@pytest.mark.django_db(transaction=True)
def test_streamed_tickers_become_marks_on_the_held_positions(strategy, account, owners):
    position = position_open(strategy=strategy, symbol=BTC, side="long",
                             quantity=Decimal("0.5"), entry_price=Decimal("50000"))
    paper = paper_exchange_for(account)
    sync = start_owner(account)
    owners.append(sync)
    assert sync.wait_for(lambda: sync.connected.is_set() and sync.watched == [BTC], WAIT)

    paper.set_price(BTC, Decimal("48000"))

    assert sync.wait_for(lambda: fetch(Position, position.pk).last_price == Decimal("48000"),
                         WAIT)
    marked = fetch(Position, position.pk)
    assert marked.trough_price == Decimal("48000")
    assert marked.unrealised_pnl() == Decimal("-1000")


def test_streamed_ticks_a_failed_flush_could_not_write_are_written_by_the_next(
        strategy, account, monkeypatch):
    position = position_open(strategy=strategy, symbol=BTC, side="long",
                             quantity=Decimal("0.5"), entry_price=Decimal("50000"))
    sync = AccountSync(account.pk, owner="test:1:paper")
    timers = {"flush": float("inf")}
    at = timezone.now()
    sync._handle(("tickers", [Ticker(BTC, Decimal("47990"), Decimal("48010"), Decimal("48000"))],
                  at), account, None, timers)
    publish = streams.marks_publish

    def locked_once(*args):
        monkeypatch.setattr(streams, "marks_publish", publish)
        raise OperationalError("database table is locked: lifecycle_position")

    monkeypatch.setattr(streams, "marks_publish", locked_once)
    with pytest.raises(OperationalError):
        sync.flush_ticks()  # the owner logs it and steps again a second later
    assert fetch(Position, position.pk).last_price == Decimal("50000")  # the entry's

    assert sync.flush_ticks() == 1
    marked = fetch(Position, position.pk)
    assert (marked.last_price, marked.last_price_at) == (Decimal("48000"), at)
    assert sync.flush_ticks() == 0  # written once


@pytest.mark.django_db(transaction=True)
def test_without_a_stream_marks_come_from_one_batched_rest_call(strategy, account, owners):
    account.live_trading = {"accountSync": {"streams": False}}
    account.save()
    for symbol in (BTC, ETH):
        position_open(strategy=strategy, symbol=symbol, side="long", quantity=Decimal("1"),
                      entry_price=Decimal("100"))
    paper = paper_exchange_for(account)
    sync = start_owner(account)
    owners.append(sync)

    assert sync.wait_for(lambda: sync.marks_published == 2, WAIT)
    assert paper.calls["ticker"] == 1
    assert sorted(Position.objects.values_list("symbol", "last_price")) == [
        (BTC, Decimal("50000")), (ETH, Decimal("2500"))]
    row = AccountStream.objects.get(account=account)
    assert (row.mode, row.last_error) == ("rest", "streams switched off for this account "
                                                  "(accountSync.streams)")


@pytest.mark.django_db(transaction=True)
def test_two_processes_one_owner_and_the_survivor_takes_over(account, owners):
    account.live_trading = {"accountSync": {"reconcileIntervalSeconds": 6}}  # 2 s lease
    account.save()
    first = StreamSupervisor(owner="host-a:1:a", poll_seconds=0.1)
    second = StreamSupervisor(owner="host-b:2:b", poll_seconds=0.1)
    owners.extend([first, second])
    first.poll_once()
    first._thread.start()
    second._thread.start()
    assert first.syncs[account.pk].wait_for(
        lambda: first.syncs[account.pk].reconciles >= 1, WAIT)
    assert account.pk not in second.syncs
    assert AccountStream.objects.get(account=account).owner == "host-a:1:a"

    killed_at = time.monotonic()
    first.abandon()  # killed: the lease is not given up, it runs out

    deadline = time.monotonic() + WAIT
    while account.pk not in second.syncs and time.monotonic() < deadline:
        first._stop.wait(0.05)
    took = time.monotonic() - killed_at
    assert account.pk in second.syncs
    assert took < 6  # within reconcileIntervalSeconds
    sync = second.syncs[account.pk]
    assert sync.wait_for(lambda: sync.reconciles >= 1, WAIT)
    row = AccountStream.objects.get(account=account)
    assert (row.owner, row.takeovers) == ("host-b:2:b", 2)


@pytest.mark.django_db
def test_a_paper_book_is_never_compared_with_the_supervised_positions(strategy, account):
    """It lives in this process and misses what was supervised before it started: comparing
    would close every such position as 'external'."""
    from execution.streams import account_positions_check

    position = position_open(strategy=strategy, symbol=BTC, side="long",
                             quantity=Decimal("0.5"), entry_price=Decimal("50000"))
    paper = paper_exchange_for(account)
    paper.trade_elsewhere(ETH, "buy", Decimal("1"))  # the book moves: position events
    assert account_positions_check(account, paper) == {
        "skipped": "paper book: lives in this process, not compared"}
    assert account_reconcile(account, paper).positions == {
        "skipped": "paper book: lives in this process, not compared"}
    assert fetch(Position, position.pk).state == PositionState.OPEN
