"""Market data: the candles of held positions' markets, from each account's exchange."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution import tasks
from execution.market_data import candles_refresh
from execution.models import Candle
from execution.tests.conftest import START, SYMBOL
from lifecycle.selectors import markets_in_use
from tradingsite.testing.factories import ExchangeAccountFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db
XRP = "XRP/USDT:USDT"


def test_the_candles_of_held_markets_are_stored_once(paper_account, paper_strategy, clock):
    PositionFactory(strategy=paper_strategy, symbol=SYMBOL)
    PositionFactory(strategy=paper_strategy, symbol=SYMBOL)
    PositionFactory(strategy=paper_strategy, symbol="ETH/USDT:USDT", state="CLOSED",
                    closed_at=START)
    assert markets_in_use() == [(paper_account, SYMBOL, "5m")]

    assert tasks.refresh_candles() == {"written": 100, "failed": []}
    assert tasks.refresh_candles() == {"written": 100, "failed": []}

    candles = Candle.objects.filter(exchange_id="paper", symbol=SYMBOL, timeframe="5m")
    assert candles.count() == 100
    newest = candles.order_by("-open_time").first()
    assert newest.open_time == START - timedelta(minutes=5)  # the bar in progress is left out
    assert newest.close == Decimal("50000")


def test_replayed_candles_are_stored_with_the_recorded_values(clock):
    account = ExchangeAccountFactory(name="replay", paper_config={"feed": {
        "type": "candle_replay", "startAt": (START - timedelta(minutes=10)).isoformat(),
        "files": {XRP: "binance-futures_XRP-USDT_5m.csv"}}})
    StrategyFactory(account=account)

    assert candles_refresh(account=account, symbol=XRP, timeframe="5m", limit=2) == 2

    rows = list(Candle.objects.order_by("open_time").values_list("open", "close", "volume"))
    assert rows == [(Decimal("1.1893"), Decimal("1.1941"), Decimal("9289043.5")),
                    (Decimal("1.1941"), Decimal("1.1972"), Decimal("7267451.9"))]
