"""Fixtures of the execution tests: a paper account on a frozen clock, a recording sleep."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from execution.exchanges.paper import paper_exchange_for, reset_paper_exchanges
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

SYMBOL = "BTC/USDT:USDT"
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def paper_config(**extra) -> dict:
    """BTC at 50 000 (manual feed), 0.02 % spread, 0.055 % taker fee, 0.001 BTC steps."""
    return {
        "feed": {"type": "manual", "prices": {SYMBOL: "50000"}},
        "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
        "book": {"spreadPercent": 0.02, "levelNotional": 500000, "levelStepPercent": 0.01},
        "markets": {SYMBOL: {"amountStep": "0.001", "priceStep": "0.1", "minAmount": "0.001"}},
        **extra,
    }


@pytest.fixture(autouse=True)
def _fresh_paper_exchanges():
    reset_paper_exchanges()
    yield
    reset_paper_exchanges()


@pytest.fixture
def clock():
    """Time frozen at START; move it with ``clock.shift(seconds)``."""
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


class RecordingSleep:
    """Stands in for ``time.sleep``: records each delay and moves the frozen clock by it."""

    def __init__(self, traveller):
        self.traveller = traveller
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.traveller.shift(seconds)


@pytest.fixture
def sleep(clock):
    return RecordingSleep(clock)


@pytest.fixture
def paper_account(db):
    return ExchangeAccountFactory(name="paper-test", paper_config=paper_config(),
                                  starting_capital=Decimal("100000"))


@pytest.fixture
def paper_strategy(paper_account):
    return StrategyFactory(name="paper-strategy", account=paper_account)


@pytest.fixture
def paper(paper_account):
    return paper_exchange_for(paper_account)


def configure(account, **extra):
    """Replace the account's paper_config (faults etc.); the exchange keeps its state."""
    account.paper_config = paper_config(**extra)
    account.save(update_fields=["paper_config"])
    return paper_exchange_for(account)
