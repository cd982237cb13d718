"""Fixtures of the guard's tests: an account of 10 000 USDT with one strategy, BTC at 50 000."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import OrderPurpose, OrderSide
from execution.pipeline import order_submit
from tradingsite.live_config import clear_cache
from tradingsite.testing.factories import (
    ExchangeAccountFactory,
    PositionFactory,
    StrategyFactory,
)

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@pytest.fixture
def book_account(db):
    return ExchangeAccountFactory(name="guarded", starting_capital=Decimal("10000"))


@pytest.fixture
def book_strategy(book_account):
    return StrategyFactory(name="guarded-trend", account=book_account)


@pytest.fixture
def limits(settings):
    """Set the site's ``liveTrading.portfolio`` (camelCase keys) for this test."""

    def apply(**portfolio):
        settings.LIVE_TRADING = {"portfolio": portfolio}
        clear_cache()

    return apply


def entry(strategy, *, quantity="0.1", price="50000", symbol=BTC, side=OrderSide.BUY, **extra):
    """Record an entry order as a worker or the API does (nothing is sent)."""
    return order_submit(account=strategy.account, strategy=strategy, symbol=symbol, side=side,
                        quantity=Decimal(quantity), expected_price=Decimal(price), **extra)


def close_of(position, *, quantity=None):
    """Record the emergency close of ``position`` as the action queue does."""
    side = OrderSide.SELL if position.side == "long" else OrderSide.BUY
    return order_submit(account=position.strategy.account, strategy=position.strategy,
                        position=position, symbol=position.symbol, side=side,
                        quantity=quantity or position.quantity,
                        purpose=OrderPurpose.EMERGENCY_CLOSE, reduce_only=True)


def held(strategy, count=1, **fields):
    return [PositionFactory(strategy=strategy, **fields) for _ in range(count)]
