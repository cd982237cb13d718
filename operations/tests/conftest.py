"""Fixtures of the shutdown and recovery tests: a paper account with BTC at 50 000.

The paper book lives in the process: ``paper_account`` starts and ends with none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine

from execution.exchanges.base import OrderRequest
from execution.exchanges.paper import PaperExchange, paper_exchange_for, reset_paper_exchanges
from execution.models import Order, OrderStatus
from execution.pipeline import order_submit
from execution.services import order_advance
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


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def paper_account(db):
    reset_paper_exchanges()
    yield ExchangeAccountFactory(name="paper-recovery", paper_config=paper_config(),
                                 starting_capital=Decimal("100000"))
    reset_paper_exchanges()


@pytest.fixture
def paper_strategy(paper_account):
    return StrategyFactory(name="recovery-strategy", account=paper_account)


@pytest.fixture
def paper(paper_account) -> PaperExchange:
    return paper_exchange_for(paper_account)


def configure(account, **extra) -> PaperExchange:
    """Replace the account's paper_config (faults…); the exchange keeps its orders."""
    account.paper_config = paper_config(**extra)
    account.save(update_fields=["paper_config"])
    return paper_exchange_for(account)


def open_entry(strategy, *, quantity: str = "0.5", side: str = "buy", price: str | None = None
               ) -> Order:
    """An entry order placed on the paper exchange and left there by one pipeline step.

    The account must be configured with a ``stay_open`` fault (or the limit price must
    not cross) for the order to stay open.
    """
    order = order_submit(account=strategy.account, strategy=strategy, symbol=SYMBOL, side=side,
                         quantity=Decimal(quantity), order_type="limit" if price else "market",
                         price=Decimal(price) if price else None)
    step = order_advance(order)
    assert step.order.status == OrderStatus.OPEN, step.order.last_error
    return step.order


def accepted_then_crashed(strategy, paper: PaperExchange, *, quantity: str = "0.5",
                          side: str = "buy", purpose: str = "entry", position=None,
                          action=None) -> Order:
    """An order the exchange accepted while the worker sending it died before the answer.

    The database holds what the worker wrote before the call: the order claimed for
    its first attempt (SUBMITTING, attempt 1), no exchange id.
    """
    order = order_submit(account=strategy.account, strategy=strategy, symbol=SYMBOL, side=side,
                         quantity=Decimal(quantity), purpose=purpose, position=position,
                         action=action, reduce_only=purpose != "entry")
    paper.place_order(OrderRequest(symbol=SYMBOL, side=side, order_type="market",
                                   amount=Decimal(quantity),
                                   client_order_id=order.client_order_id,
                                   reduce_only=purpose != "entry"))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SUBMITTING, attempts=1,
                                             submitted_at=order.created_at)
    return Order.objects.get(pk=order.pk)
