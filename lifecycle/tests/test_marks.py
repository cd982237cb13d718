"""Fresh marks on held positions (lifecycle.external.positions_mark)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from lifecycle.external import held_symbols, positions_mark
from lifecycle.models import Position, PositionState
from lifecycle.signals import positions_marked
from tradingsite.testing.factories import ExchangeAccountFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def book(clock):
    account = ExchangeAccountFactory(name="marks-main")
    other = ExchangeAccountFactory(name="marks-other")
    strategy = StrategyFactory(name="marks-a", account=account)
    second = StrategyFactory(name="marks-b", account=account)
    return {
        "account": account,
        "long": PositionFactory(strategy=strategy, symbol=BTC, entry_price=Decimal("50000"),
                                opened_at=NOW - timedelta(hours=1)),
        "short": PositionFactory(strategy=second, symbol=BTC, side="short",
                                 entry_price=Decimal("50200"),
                                 opened_at=NOW - timedelta(hours=1)),
        "eth": PositionFactory(strategy=strategy, symbol=ETH, entry_price=Decimal("2500"),
                               opened_at=NOW - timedelta(hours=1)),
        "closed": PositionFactory(strategy=strategy, symbol=BTC, state=PositionState.CLOSED,
                                  closed_at=NOW - timedelta(minutes=5),
                                  opened_at=NOW - timedelta(hours=2)),
        "elsewhere": PositionFactory(strategy=StrategyFactory(name="marks-c", account=other),
                                     symbol=BTC, opened_at=NOW - timedelta(hours=1)),
    }


def fetch(position):
    return Position.objects.get(pk=position.pk)


def test_a_mark_moves_price_time_and_extremes_of_every_held_position_of_the_account(book):
    heard = []
    positions_marked.connect(lambda sender, **kw: heard.append(kw), weak=False,
                             dispatch_uid="test-marks")
    try:
        updated = positions_mark(account_id=book["account"].pk,
                                 marks={BTC: Decimal("49000.5")}, at=NOW)
    finally:
        positions_marked.disconnect(dispatch_uid="test-marks")

    assert updated == 2
    long, short = fetch(book["long"]), fetch(book["short"])
    assert (long.last_price, long.last_price_at) == (Decimal("49000.5"), NOW)
    assert (long.peak_price, long.trough_price) == (Decimal("50000"), Decimal("49000.5"))
    assert (short.peak_price, short.trough_price) == (Decimal("50200"), Decimal("49000.5"))
    assert long.unrealised_pnl() == Decimal("-499.75")  # 0.5 × (49000.5 − 50000)
    assert short.unrealised_pnl() == Decimal("599.75")
    untouched = [fetch(book[name]) for name in ("eth", "closed", "elsewhere")]
    assert [p.last_price_at for p in untouched] == [None, None, None]
    assert heard == [{"signal": positions_marked, "account_id": book["account"].pk,
                      "symbols": [BTC], "at": NOW}]


def test_a_newer_price_on_the_position_is_kept(book, clock):
    Position.objects.filter(pk=book["long"].pk).update(
        last_price=Decimal("50500"), last_price_at=NOW + timedelta(seconds=2))
    assert positions_mark(account_id=book["account"].pk, marks={BTC: Decimal("49000")},
                          at=NOW) == 1
    assert fetch(book["long"]).last_price == Decimal("50500")
    assert fetch(book["short"]).last_price == Decimal("49000")


def test_peak_and_trough_keep_the_extremes_across_marks(book):
    for price in ("50800", "49900", "50100"):
        positions_mark(account_id=book["account"].pk, marks={BTC: Decimal(price)}, at=NOW)
    long = fetch(book["long"])
    assert (long.peak_price, long.trough_price, long.last_price) == (
        Decimal("50800"), Decimal("49900"), Decimal("50100"))


def test_the_symbols_wanted_are_those_the_account_holds(book):
    assert held_symbols(account_id=book["account"].pk) == {BTC, ETH}
    assert positions_mark(account_id=book["account"].pk, marks={}, at=NOW) == 0
