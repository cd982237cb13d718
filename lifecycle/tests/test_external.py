"""The exchange's book against the tracked positions (lifecycle.external.book_reconcile)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.exchanges.base import ExchangePosition, TradeFill
from execution.models import OrderStatus
from lifecycle.external import book_reconcile
from lifecycle.models import Position, PositionSource, PositionState, Trade
from risk.models import RiskAlert
from tradingsite.testing.factories import (
    ExchangeAccountFactory,
    OrderFactory,
    PositionFactory,
    StrategyFactory,
)

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


class Book:
    """An exchange that lists the account's trades (what ``book_reconcile`` reads)."""

    def __init__(self, trades: list[TradeFill] | None = None):
        self.trades = trades or []
        self.asked: list[tuple[str, datetime | None]] = []

    def fetch_my_trades(self, symbol, *, since=None, limit=100):
        self.asked.append((symbol, since))
        return [t for t in self.trades if t.symbol == symbol]


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def account(clock):
    return ExchangeAccountFactory(name="bybit-main", exchange_id="bybit")


@pytest.fixture
def strategy(account):
    return StrategyFactory(name="trend", account=account)


def held(symbol: str, side: str, quantity: str, entry: str = "50000",
         opened: datetime | None = None) -> ExchangePosition:
    return ExchangePosition(symbol, side, Decimal(quantity), Decimal(entry),
                            mark_price=Decimal(entry), opened_at=opened)


def read_at() -> datetime:
    """The book was read after the test's rows were written (the clock stands at NOW)."""
    return NOW + timedelta(seconds=1)


LATER = NOW + timedelta(seconds=2)  # after the book was read


def test_an_untracked_position_is_alerted_and_not_adopted_while_the_setting_is_off(account):
    found = book_reconcile(account=account, positions=[held(BTC, "long", "0.2")],
                           read_at=read_at(), exchange=Book())
    assert found == {"differences": {BTC: "untracked: long 0.2 BTC/USDT:USDT, not adopted "
                                          "(adoptExternalPositions is off)"}}
    alert = RiskAlert.objects.get(kind="untracked_position")
    assert (alert.subject, alert.severity, alert.position_id) == (
        "bybit-main BTC/USDT:USDT", "CRITICAL", None)
    assert not Position.objects.exists()
    # still there at the next comparison: the same alert, seen again
    book_reconcile(account=account, positions=[held(BTC, "long", "0.2")], read_at=read_at(),
                   exchange=Book())
    assert RiskAlert.objects.get(kind="untracked_position").occurrences == 2


def test_adoption_needs_a_supervision_strategy(account, strategy):
    account.live_trading = {"accountSync": {"adoptExternalPositions": True}}
    account.save()
    found = book_reconcile(account=account, positions=[held(BTC, "short", "0.2")],
                           read_at=read_at(), exchange=Book())
    assert found["differences"][BTC] == ("untracked: short 0.2 BTC/USDT:USDT, not adopted (no "
                                         "supervision strategy on the account)")
    assert not Position.objects.exists()


def test_an_adopted_position_is_opened_at_the_exchanges_time_on_the_supervision_strategy(
        account, strategy):
    account.live_trading = {"accountSync": {"adoptExternalPositions": True}}
    account.save()
    supervisor = StrategyFactory(name="supervise", account=account, supervises_account=True)
    opened = NOW - timedelta(hours=3)
    found = book_reconcile(account=account,
                           positions=[held(BTC, "short", "0.2", "61000.5", opened)],
                           read_at=read_at(), exchange=Book())
    adopted = Position.objects.get()
    assert found["differences"][BTC] == (f"untracked: short 0.2 BTC/USDT:USDT, adopted as "
                                         f"position #{adopted.pk}")
    assert (adopted.strategy, adopted.side, adopted.quantity, adopted.entry_price,
            adopted.opened_at, adopted.source) == (
        supervisor, "short", Decimal("0.2"), Decimal("61000.5"), opened,
        PositionSource.RECONCILE)
    alert = RiskAlert.objects.get(kind="untracked_position")
    assert alert.severity == "WARNING"
    assert alert.message == (f"bybit-main: short 0.2 BTC/USDT:USDT opened outside the platform: "
                             f"adopted as position #{adopted.pk} on strategy supervise, opened "
                             "2026-03-02 09:00:00 UTC")
    # the next comparison finds it tracked: nothing more
    assert book_reconcile(account=account, positions=[held(BTC, "short", "0.2", "61000.5",
                                                           opened)],
                          read_at=LATER, exchange=Book()) == {}
    assert Position.objects.count() == 1


def test_tracked_positions_the_exchange_shows_flat_close_external_sharing_the_trade(
        account, strategy):
    first = PositionFactory(strategy=strategy, symbol=BTC, quantity=Decimal("0.3"),
                            entry_price=Decimal("50000"), opened_at=NOW - timedelta(hours=2))
    second = PositionFactory(strategy=strategy, symbol=BTC, quantity=Decimal("0.2"),
                             entry_price=Decimal("50500"), opened_at=NOW - timedelta(hours=1))
    OrderFactory(account=account, client_order_id="o-ours", symbol=BTC, status=OrderStatus.FILLED,
                 quantity=Decimal("0.1"), filled_quantity=Decimal("0.1"),
                 updated_at=NOW - timedelta(minutes=30))
    book = Book([
        TradeFill("t1", "x1", "o-ours", BTC, "sell", Decimal("0.1"), Decimal("49000"),
                  Decimal("1"), NOW - timedelta(minutes=30)),  # one of ours: not the exit
        TradeFill("t2", "x2", "", BTC, "sell", Decimal("0.4"), Decimal("51000"),
                  Decimal("10"), NOW - timedelta(minutes=10)),
        TradeFill("t3", "x3", "", BTC, "sell", Decimal("0.1"), Decimal("52000"),
                  Decimal("2"), NOW - timedelta(minutes=5))])
    OrderFactory._meta.model.objects.filter(client_order_id="o-ours").update(
        updated_at=NOW - timedelta(minutes=30))

    found = book_reconcile(account=account, positions=[], read_at=read_at(), exchange=book)

    assert book.asked == [(BTC, NOW - timedelta(hours=2))]
    first, second = Position.objects.get(pk=first.pk), Position.objects.get(pk=second.pk)
    assert (first.state, first.close_reason, second.state) == (
        PositionState.CLOSED, "external", PositionState.CLOSED)
    first_trade, second_trade = Trade.objects.get(position=first), Trade.objects.get(
        position=second)
    # 0.3 from t2 @ 51000; 0.2 = the rest of t2 (0.1 @ 51000) and t3 (0.1 @ 52000)
    assert (first_trade.exit_price, first_trade.fees, first_trade.exit_reason) == (
        Decimal("51000"), Decimal("7.5"), "external")
    assert (second_trade.exit_price, second_trade.fees) == (Decimal("51500"), Decimal("4.5"))
    assert first_trade.closed_at == NOW - timedelta(minutes=10)
    assert second_trade.closed_at == NOW - timedelta(minutes=5)
    assert found["differences"][BTC] == (
        f"closed elsewhere: #{first.pk} at 51000 (from 1 exchange trade(s)), #{second.pk} at "
        "51500 (from 2 exchange trade(s))")
    assert RiskAlert.objects.get(kind="external_close").severity == "WARNING"


def test_without_a_listed_trade_the_exit_is_the_last_mark(account, strategy):
    position = PositionFactory(strategy=strategy, symbol=ETH, quantity=Decimal("1"),
                               entry_price=Decimal("2500"), last_price=Decimal("2450"),
                               opened_at=NOW - timedelta(hours=1))
    book_reconcile(account=account, positions=[], read_at=read_at(), exchange=Book())
    trade = Trade.objects.get(position=position)
    assert (trade.exit_price, trade.closed_at) == (Decimal("2450"), read_at())


@pytest.mark.parametrize("flux", ["active order", "order written since", "opened since",
                                  "closing", "attention"])
def test_a_symbol_in_flux_is_left_for_the_next_comparison(account, strategy, flux):
    position = PositionFactory(strategy=strategy, symbol=BTC, quantity=Decimal("0.3"),
                               opened_at=NOW - timedelta(hours=1))
    if flux == "active order":
        OrderFactory(account=account, symbol=BTC, status=OrderStatus.OPEN)
    elif flux == "order written since":
        order = OrderFactory(account=account, symbol=BTC, status=OrderStatus.FILLED)
        OrderFactory._meta.model.objects.filter(pk=order.pk).update(updated_at=LATER)
    elif flux == "opened since":
        Position.objects.filter(pk=position.pk).update(created_at=LATER)
    elif flux == "closing":
        Position.objects.filter(pk=position.pk).update(state=PositionState.CLOSING)
    else:
        Position.objects.filter(pk=position.pk).update(attention="fill not applied")
    found = book_reconcile(account=account, positions=[], read_at=read_at(), exchange=Book())
    assert found == {"differences": {BTC: "in flux: compared next time"}}
    assert Position.objects.get(pk=position.pk).state != PositionState.CLOSED


def test_other_differences_are_a_mismatch_for_the_operator(account, strategy):
    PositionFactory(strategy=strategy, symbol=BTC, quantity=Decimal("0.5"),
                    opened_at=NOW - timedelta(hours=1))
    found = book_reconcile(account=account, positions=[held(BTC, "long", "0.3")],
                           read_at=read_at(), exchange=Book())
    assert found["differences"][BTC] == "differs: tracked 0.5, exchange 0.3"
    alert = RiskAlert.objects.get(kind="position_mismatch")
    assert alert.message == ("bybit-main BTC/USDT:USDT: tracked net 0.5, exchange net 0.3 "
                             "(long > 0): check before closing")


def test_the_untracked_alert_is_resolved_once_the_position_is_gone(account):
    book_reconcile(account=account, positions=[held(BTC, "long", "0.2")], read_at=read_at(),
                   exchange=Book())
    assert book_reconcile(account=account, positions=[], read_at=LATER, exchange=Book()) == {}
    assert RiskAlert.objects.get(kind="untracked_position").resolved_at == NOW
