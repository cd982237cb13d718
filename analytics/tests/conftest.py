"""Fixtures of the analytics tests."""

from datetime import timedelta
from decimal import Decimal

import pytest

from tradingsite.live_config import clear_cache
from tradingsite.testing.factories import TradeFactory


@pytest.fixture
def make_trade(strategy):
    """A closed trade with the given PnL, closed at ``closed_at`` after ``hold``."""

    def make(pnl, closed_at, *, hold=timedelta(minutes=30), **fields):
        fields.setdefault("strategy", strategy)
        return TradeFactory(pnl=Decimal(str(pnl)), closed_at=closed_at,
                            opened_at=closed_at - hold, **fields)

    return make


@pytest.fixture
def live_trading(settings):
    """Override the live-trading config for one test: ``live_trading({...})``."""
    import json

    def configure(overrides: dict) -> None:
        settings.LIVE_TRADING = json.dumps(overrides)
        clear_cache()

    return configure
