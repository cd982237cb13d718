"""A simulated day of paper trading on recorded XRP candles, at accelerated time.

The paper exchange replays the recorded 5-minute candles of 16 November 2021 on
the clock; the clock steps through the day candle by candle. At each step beat
runs the platform's periodic tasks (candles refreshed, timeouts checked, risk
scored — in that order), the action queue closes what they asked for, and a simple
deterministic bot trades momentum: after two candles closing the same way it
enters in that direction, and it takes profit at +0.5 %. Timeouts (60 min) and the
risk monitor end the other trades.

The day's trades must then produce the analytics report recomputed here by hand.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics.periods import Period
from analytics.services import ReportRequest, performance_report
from execution.exchanges.paper import paper_exchange_for
from execution.models import Order
from execution.services import order_place
from execution.tasks import drive_in_background
from lifecycle.models import Position, PositionState, Trade
from lifecycle.services import position_request_close
from tests.integration.harness import Platform
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

XRP = "XRP/USDT:USDT"
DAY = datetime(2021, 11, 16, tzinfo=UTC)
CANDLE = timedelta(minutes=5)
QUANTITY = Decimal("2000")
TAKE_PROFIT = Decimal("0.005")
LAST_ENTRY = DAY + timedelta(hours=23)  # every trade is over by midnight
CAPITAL = Decimal("100000")
BEAT = {"execution.tasks.refresh_candles": 300, "lifecycle.tasks.check_timeouts": 300,
        "risk.tasks.check_risk": 300}
STRATEGY = {
    "lifecycle": {"warningThresholdMinutes": 45, "maxHoldingTimeMinutes": 60},
    "riskMonitoring": {"checkIntervalCandles": 1, "drawdownLimitPercent": 1.0,
                       "lossLimitPercent": 1.0, "profitTargetPercent": 1.0,
                       "healthScoreThreshold": 35},
}


@pytest.fixture
def day(clock, platform: Platform):
    clock.move_to(DAY)
    account = ExchangeAccountFactory(name="paper-replay", starting_capital=CAPITAL, paper_config={
        "feed": {"type": "candle_replay", "timeframe": "5m", "startAt": "2021-11-15T00:00:00Z",
                 "loop": False, "files": {XRP: "binance-futures_XRP-USDT_5m.csv"}},
        "fees": {"takerPercent": 0.055, "makerPercent": 0.02},
        "book": {"spreadPercent": 0.02, "levelNotional": 50000, "levelStepPercent": 0.01},
        "markets": {XRP: {"amountStep": "1", "priceStep": "0.0001", "minAmount": "1"}},
    })
    strategy = StrategyFactory(name="xrp-momentum", account=account, timeframe="5m",
                               live_trading=STRATEGY)
    for task, every in BEAT.items():
        platform.schedule(task, every)
    return account, strategy


class MomentumBot:
    """Two candles closing the same way: enter that way. Up 0.5 %: take profit."""

    def __init__(self, account, strategy):
        self.strategy = strategy
        self.exchange = paper_exchange_for(account)

    def step(self) -> None:
        last, previous = reversed(self.exchange.fetch_candles(XRP, "5m", limit=2))
        held = Position.objects.filter(strategy=self.strategy,
                                       state__in=PositionState.active()).first()
        if held is None:
            up, before_up = last.close > last.open, previous.close > previous.open
            moved = last.close != last.open and previous.close != previous.open
            if moved and up == before_up and timezone.now() < LAST_ENTRY:
                order_place(drive=drive_in_background, account=self.strategy.account,
                            strategy=self.strategy, symbol=XRP, side="buy" if up else "sell",
                            quantity=QUANTITY)
            return
        direction = 1 if held.side == "long" else -1
        if held.state in PositionState.holding() and (
                last.close / held.entry_price - 1) * direction >= TAKE_PROFIT:
            position_request_close(position=held, reason="signal", actor="bot", kind="close")


def pnl_from_fills(position: Position) -> Decimal:
    """Realised PnL of a position from its orders' fills: exits − entries − every fee."""
    orders = Order.objects.filter(position=position, filled_quantity__gt=0)
    value = {purpose: sum((o.filled_quantity * o.average_fill_price for o in orders
                           if (o.purpose == "entry") == (purpose == "entry")), Decimal(0))
             for purpose in ("entry", "exit")}
    direction = 1 if position.side == "long" else -1
    return direction * (value["exit"] - value["entry"]) - sum(o.fee for o in orders)


def max_drawdown_amount(start: Decimal, pnls: list[Decimal]) -> Decimal:
    equity, peak, deepest = start, start, Decimal(0)
    for pnl in pnls:
        equity += pnl
        peak = max(peak, equity)
        deepest = min(deepest, equity - peak)
    return deepest


def test_a_day_of_momentum_trading_produces_the_report_recomputed_from_the_fills(platform,
                                                                                 day):
    account, strategy = day
    bot = MomentumBot(account, strategy)
    moment = DAY
    while moment < DAY + timedelta(days=1):
        moment += CANDLE
        platform.run(until=moment)
        bot.step()
    platform.run()

    trades = list(Trade.objects.select_related("position").order_by("closed_at", "pk"))
    assert len(trades) == 28
    assert Counter(t.exit_reason for t in trades) == {"signal": 14, "timeout": 8, "risk": 6}
    assert set(Position.objects.values_list("state", flat=True)) == {"CLOSED"}
    assert Counter(Order.objects.values_list("purpose", "status")) == {
        ("entry", "filled"): 28, ("close", "filled"): 14, ("emergency_close", "filled"): 14}
    assert all(t.holding_seconds == 3600 for t in trades if t.exit_reason == "timeout")

    # the PnL, three ways: the trades, the fills, the exchange's own cash
    total = sum(t.pnl for t in trades)
    assert total == Decimal("-62.8350900000")
    assert [pnl_from_fills(t.position) for t in trades] == [t.pnl for t in trades]
    assert paper_exchange_for(account).cash["USDT"] - CAPITAL == total

    report = performance_report(ReportRequest(period=Period.ALL, start=DAY,
                                              end=DAY + timedelta(days=1)))
    metrics = {name: m["value"] for name, m in report["metrics"].items()}
    pnls = [t.pnl for t in trades]
    wins, losses = [p for p in pnls if p > 0], [p for p in pnls if p < 0]
    assert (report["trade_count"], metrics["wins"], metrics["losses"]) == (28, len(wins),
                                                                           len(losses))
    assert (len(wins), len(losses)) == (16, 12)
    exact = pytest.approx
    assert metrics["total_pnl"] == exact(float(total), abs=1e-9)
    assert metrics["win_rate"] == 16 / 28
    assert metrics["profit_factor"] == exact(float(sum(wins) / -sum(losses)), rel=1e-12)
    assert metrics["expectancy"] == exact(float(total / 28), rel=1e-12)
    assert metrics["fees_paid"] == exact(float(sum(t.fees for t in trades)), rel=1e-12)
    assert metrics["return_percent"] == exact(float(total / CAPITAL * 100), rel=1e-12)
    assert metrics["max_drawdown_amount"] == exact(
        float(max_drawdown_amount(CAPITAL, pnls)), rel=1e-12)
    assert metrics["holding_seconds_mean"] == exact(
        sum(t.holding_seconds for t in trades) / 28, rel=1e-12)
    assert (report["end_equity"], report["start_equity"]) == (
        exact(float(CAPITAL + total), rel=1e-12), float(CAPITAL))
    assert report["top_trades"][0]["pnl"] == float(max(pnls))
    assert report["worst_trades"][0]["pnl"] == float(min(pnls))
