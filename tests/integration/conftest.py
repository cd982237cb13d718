"""Fixtures of the end-to-end scenarios: a frozen clock, the platform in virtual time,
paper exchange accounts and a recorder of the live events pushed to dashboards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from celery.app.task import Task

from execution.exchanges.paper import PaperExchange, paper_exchange_for, reset_paper_exchanges
from execution.models import Candle, ExchangeAccount
from lifecycle.models import Strategy
from tests.integration.harness import Platform
from tradingsite import live
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday morning
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
PRICES = {BTC: "50000", ETH: "2500"}
MARKETS = {BTC: {"amountStep": "0.001", "priceStep": "0.1", "minAmount": "0.001"},
           ETH: {"amountStep": "0.01", "priceStep": "0.01", "minAmount": "0.01"}}


def paper_config(**extra: Any) -> dict[str, Any]:
    """Manual prices (BTC 50 000, ETH 2 500), 0.02 % spread, 0.055 % taker fee, deep book."""
    return {
        "feed": {"type": "manual", "prices": dict(PRICES)},
        "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
        "book": {"spreadPercent": 0.02, "levelNotional": 5000000, "levelStepPercent": 0.01},
        "markets": MARKETS,
        **extra,
    }


def paper_account(name: str = "paper-main", *, capital: str = "100000",
                  **extra: Any) -> ExchangeAccount:
    return ExchangeAccountFactory(name=name, paper_config=paper_config(**extra),
                                  starting_capital=Decimal(capital))


def strategy_on(account: ExchangeAccount, name: str, **live_trading: Any) -> Strategy:
    return StrategyFactory(name=name, account=account, timeframe="5m",
                           live_trading=live_trading)


def inject_faults(account: ExchangeAccount, *faults: dict[str, Any]) -> PaperExchange:
    """Queue faults on the account's paper exchange (its book and balances are kept)."""
    account.paper_config = {**account.paper_config, "faults": list(faults)}
    account.save(update_fields=["paper_config"])
    return paper_exchange_for(account)


def write_candles(symbol: str, closes: list[str], volumes: list[str] | None = None, *,
                  end: datetime, exchange_id: str = "paper") -> None:
    """5-minute candles whose last one closes at ``end``, oldest first (flat bars)."""
    step = timedelta(minutes=5)
    volumes = volumes or ["100"] * len(closes)
    Candle.objects.bulk_create([
        Candle(exchange_id=exchange_id, symbol=symbol, timeframe="5m",
               open_time=end - step * (len(closes) - k), open=Decimal(c), high=Decimal(c),
               low=Decimal(c), close=Decimal(c), volume=Decimal(v))
        for k, (c, v) in enumerate(zip(closes, volumes, strict=True))])


@pytest.fixture(autouse=True)
def _fresh_paper_exchanges() -> Iterator[None]:
    reset_paper_exchanges()
    yield
    reset_paper_exchanges()


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def platform(clock: Any, monkeypatch: pytest.MonkeyPatch) -> Platform:
    """Broker, worker and beat in this thread; every task message goes through it."""
    simulated = Platform(clock)

    def apply_async(task: Task, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        simulated.send(task.name, tuple(args or ()), kwargs, countdown=options.get("countdown"),
                       eta=options.get("eta"), queue=options.get("queue"))

    monkeypatch.setattr(Task, "apply_async", apply_async)
    return simulated


@pytest.fixture
def live_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Every event pushed to the dashboards, in order (still sent to the channel layer)."""
    pushed: list[tuple[str, dict]] = []
    send_many = live.send_many

    def record(events: Any) -> None:
        events = list(events)
        pushed.extend((event, live._jsonable(payload)) for event, payload in events)
        send_many(events)

    monkeypatch.setattr(live, "send_many", record)
    return pushed
