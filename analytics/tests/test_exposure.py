"""Balances, equity and exposure per account (analytics.exposure) and the account API."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.models import AccountStream
from lifecycle.models import PositionState
from tradingsite.testing.factories import (
    ExchangeAccountFactory,
    PositionFactory,
    StrategyFactory,
    TradeFactory,
)

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def book(clock):
    bybit = ExchangeAccountFactory(name="bybit-main", exchange_id="bybit",
                                   starting_capital=Decimal("20000"))
    paper = ExchangeAccountFactory(name="paper-side", starting_capital=Decimal("5000"))
    AccountStream.objects.create(
        account=bybit, owner="host:1:a", lease_until=NOW + timedelta(seconds=10),
        mode="stream", connected=True, last_message_at=NOW - timedelta(seconds=2),
        last_reconcile_at=NOW - timedelta(seconds=30), reconnects=3, messages=120,
        balances={"USDT": {"free": "9000", "used": "1000", "total": "10000"},
                  "BTC": {"free": "0.1", "used": "0", "total": "0.1"}},
        balances_at=NOW - timedelta(seconds=30))
    trend = StrategyFactory(name="trend", account=bybit)
    side = StrategyFactory(name="side", account=paper)
    PositionFactory(strategy=trend, symbol=BTC, quantity=Decimal("0.2"),
                    entry_price=Decimal("50000"), last_price=Decimal("51000"),
                    last_price_at=NOW - timedelta(seconds=4), opened_at=NOW - timedelta(hours=1))
    PositionFactory(strategy=trend, symbol=BTC, side="short", quantity=Decimal("0.05"),
                    entry_price=Decimal("50500"), last_price=Decimal("51000"),
                    last_price_at=NOW - timedelta(seconds=3), opened_at=NOW - timedelta(hours=1))
    PositionFactory(strategy=trend, symbol=ETH, quantity=Decimal("2"),
                    entry_price=Decimal("2500"), last_price=Decimal("2400"),
                    last_price_at=NOW - timedelta(seconds=20), opened_at=NOW - timedelta(hours=1))
    PositionFactory(strategy=trend, symbol=ETH, quantity=Decimal("9"), state=PositionState.CLOSED,
                    closed_at=NOW, opened_at=NOW - timedelta(hours=2))
    PositionFactory(strategy=side, symbol=ETH, quantity=Decimal("1"),
                    entry_price=Decimal("2500"), opened_at=NOW - timedelta(hours=1))  # no mark
    TradeFactory(strategy=side, pnl=Decimal("-150"))
    return bybit, paper


def test_exposure_per_account_at_the_marks(book, viewer_api):
    answer = viewer_api.get("/api/analytics/exposure")
    assert answer.status_code == 200
    bybit, paper = answer.json()
    # unrealised: 0.2 × 1000 − 0.05 × 500 − 2 × 100 = −25; equity 10000 − 25
    assert (bybit["account"], bybit["balance"], bybit["balance_source"], bybit["unrealised_pnl"],
            bybit["equity"]) == ("bybit-main", "10000.00000000", "exchange (last reconcile)",
                                 "-25.00000000", "9975.00000000")
    # gross: 0.25 × 51000 + 2 × 2400 = 17550 → 175.94 % of equity
    assert (bybit["gross_notional"], bybit["percent_of_equity"]) == ("17550.00000000", "175.94")
    assert bybit["exposure"] == [
        {"symbol": BTC, "positions": 2, "net_quantity": "0.150000000000",
         "mark_price": "51000.0000000000", "mark_age_seconds": 4.0, "mark_stale": False,
         "gross_notional": "12750.00000000", "percent_of_equity": "127.82",
         "unrealised_pnl": "175.00000000"},
        {"symbol": ETH, "positions": 1, "net_quantity": "2.000000000000",
         "mark_price": "2400.0000000000", "mark_age_seconds": 20.0, "mark_stale": True,
         "gross_notional": "4800.00000000", "percent_of_equity": "48.12",
         "unrealised_pnl": "-200.00000000"}]
    # never read from the exchange: the starting capital plus the realised PnL
    assert (paper["balance"], paper["balance_source"], paper["equity"]) == (
        "4850.00000000", "starting capital + realised PnL", "4850.00000000")
    assert paper["exposure"][0]["mark_stale"] is True  # valued at entry: no mark yet


def test_the_account_api_shows_the_stream_status_with_ages(book, viewer_api):
    answer = viewer_api.get("/api/execution/accounts")
    assert answer.status_code == 200
    bybit, paper = answer.json()["results"]
    assert bybit["stream"] == {
        "mode": "stream", "owner": "host:1:a", "owner_alive": True, "owner_since": None,
        "lease_until": "2026-03-02T12:00:10Z", "takeovers": 0, "connected": True,
        "connected_at": None, "last_message_at": "2026-03-02T11:59:58Z",
        "last_message_age_seconds": 2.0, "messages": 120, "reconnects": 3,
        "last_reconcile_at": "2026-03-02T11:59:30Z", "last_reconcile_age_seconds": 30.0,
        "last_mark_at": None, "last_error": "", "last_error_at": None}
    assert bybit["balances"]["USDT"] == {"free": "9000.0000000000", "used": "1000.0000000000",
                                         "total": "10000.0000000000"}
    assert bybit["sync"] == {"streams": True, "reconcile_interval_seconds": 60.0,
                             "mark_refresh_seconds": 5.0, "adopt_external_positions": False}
    assert (paper["stream"], paper["balances"], paper["balances_at"]) == (None, {}, None)


def test_positions_carry_the_age_of_their_mark_and_say_when_it_is_stale(book, viewer_api):
    rows = viewer_api.get("/api/positions/?active=true&ordering=opened_at").json()["results"]
    ages = sorted((r["symbol"], r["account"], r["mark_age_seconds"], r["mark_stale"])
                  for r in rows)
    assert ages == [(BTC, "bybit-main", 3.0, False), (BTC, "bybit-main", 4.0, False),
                    (ETH, "bybit-main", 20.0, True), (ETH, "paper-side", None, True)]


def test_an_account_with_faster_marks_goes_stale_sooner(book, viewer_api):
    bybit, _ = book
    bybit.live_trading = {"accountSync": {"markRefreshSeconds": 1}}
    bybit.save()
    rows = viewer_api.get("/api/positions/?active=true").json()["results"]
    assert sorted((r["symbol"], r["mark_stale"]) for r in rows
                  if r["account"] == "bybit-main") == [(BTC, False), (BTC, True), (ETH, True)]
    # three intervals of 1 s: a 3.0 s old mark is still fresh, 4.0 s is stale
