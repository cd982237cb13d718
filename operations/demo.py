"""Demo data for the embedded default (``python manage.py seed_demo``).

A paper account replays real recorded candles (XRP/USDT perpetual, 5-minute bars,
shipped in ``settings.PAPER_CANDLE_DIR``) on the wall clock: bar ``i`` of the file is
the market at ``feed.start_at + i × 5 min``, looping when the file ends. Every demo
price comes from that replay, so positions, trades and candles agree with what the
paper exchange will quote.

Seeding is idempotent: each part is created once (recognised by its name or by the
``demo-`` prefix of its external reference) and reported as present afterwards.
"""

from __future__ import annotations

import csv
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from execution.models import Candle, ExchangeAccount, Order, OrderPurpose, OrderSide, OrderStatus, OrderType
from lifecycle.models import (
    Position,
    PositionSide,
    PositionSource,
    PositionState,
    Strategy,
    Trade,
)
from lifecycle.services import position_open, position_transition
from tradingsite.domain import CloseReason

ACCOUNT_NAME = "paper-demo"
SYMBOL = "XRP/USDT:USDT"
CANDLE_FILE = "binance-futures_XRP-USDT_5m.csv"
TIMEFRAME = "5m"
BAR = timedelta(minutes=5)
HISTORY = timedelta(hours=24)
TRADE_SPAN = timedelta(days=21)
TAKER_FEE = Decimal("0.00055")
FILE_STEP = Decimal("1e-10")  # the database keeps 10 decimals of prices and volumes
MONEY_STEP = Decimal("0.00000001")
ACTOR = "seed_demo"
DEMO_REF = "demo-"

STRATEGIES: dict[str, dict[str, Any]] = {
    "xrp-trend-5m": {
        "description": "Demo: trend following on 5-minute XRP bars; the default holding limits "
                       "(warning 180 min, timeout 240 min).",
        "live_trading": {},
    },
    "xrp-scalp-5m": {
        "description": "Demo: short scalps with tighter limits set as per-strategy overrides.",
        "live_trading": {
            "lifecycle": {"warningThresholdMinutes": 60, "maxHoldingTimeMinutes": 90},
            "riskMonitoring": {"checkIntervalCandles": 2, "healthScoreThreshold": 35},
            "orderExecution": {"maxSlippagePercent": 0.3},
        },
    },
}

# (strategy, side, quantity, age in minutes): ages chosen around each strategy's limits.
OPEN_POSITIONS: list[tuple[str, str, Decimal, int]] = [
    ("xrp-trend-5m", PositionSide.LONG, Decimal("2000"), 25),
    ("xrp-trend-5m", PositionSide.SHORT, Decimal("1500"), 150),
    ("xrp-trend-5m", PositionSide.LONG, Decimal("2500"), 205),
    ("xrp-trend-5m", PositionSide.SHORT, Decimal("1000"), 236),
    ("xrp-scalp-5m", PositionSide.LONG, Decimal("800"), 20),
    ("xrp-scalp-5m", PositionSide.SHORT, Decimal("1200"), 72),
]
TRADE_COUNT = 36
EXIT_REASONS = ([CloseReason.SIGNAL] * 27 + [CloseReason.TIMEOUT] * 4 + [CloseReason.RISK] * 3
                + [CloseReason.MANUAL] * 2)


@dataclass(frozen=True)
class Bar:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def read_candle_file(path: Path) -> list[Bar]:
    """Bars of a ``timestamp_ms,open,high,low,close,volume`` CSV, oldest first.

    Values are rounded to what the database stores (the files carry float artefacts
    such as ``1.1804000000000001``), so stored and computed prices agree exactly.
    """
    columns = ("open", "high", "low", "close", "volume")
    with path.open(newline="", encoding="utf-8") as fh:
        return [Bar(*(Decimal(row[key]).quantize(FILE_STEP) for key in columns))
                for row in csv.DictReader(fh)]


@dataclass(frozen=True)
class Replay:
    """Recorded bars replayed on the wall clock: bar ``i`` is the market at ``start + i × step``."""

    bars: list[Bar]
    start: datetime
    step: timedelta = BAR

    def open_time(self, at: datetime) -> datetime:
        """Start of the bar that contains ``at``."""
        return self.start + self.step * ((at - self.start) // self.step)

    def bar_at(self, at: datetime) -> Bar:
        return self.bars[((at - self.start) // self.step) % len(self.bars)]

    def price_at(self, at: datetime) -> Decimal:
        """The last traded price known at ``at``: the close of the bar before ``at``'s bar."""
        return self.bar_at(at - self.step).close

    def closed_bars(self, since: datetime, until: datetime) -> list[tuple[datetime, Bar]]:
        """Bars that opened at or after ``since``'s bar and closed by ``until``."""
        times = []
        t = self.open_time(since)
        while t + self.step <= until:
            times.append(t)
            t += self.step
        return [(t, self.bar_at(t)) for t in times]


@dataclass
class SeedReport:
    """What ``seed_demo`` created (counts) and what it found already present."""

    created: dict[str, int] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    username: str = ""
    password: str | None = None  # set only when the staff user was created by this run


def paper_config(start_at: datetime) -> dict[str, Any]:
    """The paper exchange's settings: the replayed feed and a taker fee."""
    return {
        "feed": {"type": "candle_replay", "timeframe": TIMEFRAME, "start_at": start_at.isoformat(),
                 "loop": True, "files": {SYMBOL: CANDLE_FILE}},
        "fees": {"takerPercent": float(TAKER_FEE * 100)},
    }


def demo_replay(account: ExchangeAccount) -> Replay:
    feed = account.paper_config["feed"]
    start = parse_datetime(feed["start_at"])
    return Replay(read_candle_file(Path(settings.PAPER_CANDLE_DIR) / feed["files"][SYMBOL]), start)


@transaction.atomic
def seed_demo(*, now: datetime | None = None, username: str = "admin") -> SeedReport:
    """Create the demo account, strategies, candles, positions, trades and staff user once."""
    now = now or timezone.now()
    report = SeedReport(username=username)
    account = _account(now, report)
    replay = demo_replay(account)
    strategies = _strategies(account, report)
    _candles(replay, now, report)
    _open_positions(account, strategies, replay, now, report)
    _trades(strategies, replay, now, report)
    _staff_user(username, report)
    return report


def _account(now: datetime, report: SeedReport) -> ExchangeAccount:
    start_at = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5) - HISTORY
    account, created = ExchangeAccount.objects.get_or_create(
        name=ACCOUNT_NAME,
        defaults={"exchange_id": ExchangeAccount.PAPER, "market_type": "linear",
                  "quote_currency": "USDT", "starting_capital": Decimal("10000"),
                  "paper_config": paper_config(start_at)})
    _count(report, "exchange account", created, account.name)
    return account


def _strategies(account: ExchangeAccount, report: SeedReport) -> dict[str, Strategy]:
    strategies = {}
    for name, spec in STRATEGIES.items():
        strategy, created = Strategy.objects.get_or_create(
            name=name, defaults={"account": account, "timeframe": TIMEFRAME, **spec})
        strategy.effective_config()  # the overrides above must stay valid
        _count(report, "strategies", created, name)
        strategies[name] = strategy
    return strategies


def _candles(replay: Replay, now: datetime, report: SeedReport) -> None:
    existing = Candle.objects.filter(exchange_id=ExchangeAccount.PAPER, symbol=SYMBOL,
                                     timeframe=TIMEFRAME)
    if existing.exists():
        report.present.append(f"candles ({existing.count()} of {SYMBOL} {TIMEFRAME})")
        return
    rows = [Candle(exchange_id=ExchangeAccount.PAPER, symbol=SYMBOL, timeframe=TIMEFRAME,
                   open_time=t, open=bar.open, high=bar.high, low=bar.low, close=bar.close,
                   volume=bar.volume)
            for t, bar in replay.closed_bars(now - HISTORY, now)]
    Candle.objects.bulk_create(rows)
    report.created["candles"] = len(rows)


def _open_positions(account: ExchangeAccount, strategies: dict[str, Strategy], replay: Replay,
                    now: datetime, report: SeedReport) -> None:
    demo_positions = Position.objects.filter(strategy__account=account,
                                             external_ref__startswith=DEMO_REF)
    if demo_positions.exists():
        still_open = demo_positions.filter(state__in=PositionState.active()).count()
        report.present.append(f"demo positions ({still_open} still open)")
        return
    for number, (strategy_name, side, quantity, age_minutes) in enumerate(OPEN_POSITIONS, 1):
        _open_position(account, strategies[strategy_name], replay, now, number=number, side=side,
                       quantity=quantity, opened_at=now - timedelta(minutes=age_minutes))
    report.created["open positions"] = len(OPEN_POSITIONS)


def _open_position(account: ExchangeAccount, strategy: Strategy, replay: Replay, now: datetime, *,
                   number: int, side: str, quantity: Decimal, opened_at: datetime) -> Position:
    """An entry fill handed to the lifecycle, marked to the replay, in WARNING if that old."""
    entry = replay.price_at(opened_at)
    since_open = replay.closed_bars(opened_at, now)
    ref = f"{DEMO_REF}{strategy.name}-{number}"
    client_order_id = f"{ref}-entry"
    position = position_open(
        strategy=strategy, symbol=SYMBOL, side=side, quantity=quantity, entry_price=entry,
        opened_at=opened_at, entry_fee=_money(entry * quantity * TAKER_FEE),
        source=PositionSource.FILL, external_ref=ref, actor=ACTOR,
        fill_key=f"{client_order_id}:{quantity}")
    if since_open:
        Position.objects.filter(pk=position.pk).update(
            peak_price=max([entry, *(bar.high for _, bar in since_open)]),
            trough_price=min([entry, *(bar.low for _, bar in since_open)]),
            last_price=since_open[-1][1].close, last_price_at=since_open[-1][0] + BAR)
    Order.objects.create(
        account=account, position=position, client_order_id=client_order_id, symbol=SYMBOL,
        side=OrderSide.BUY if side == PositionSide.LONG else OrderSide.SELL,
        order_type=OrderType.MARKET, purpose=OrderPurpose.ENTRY, quantity=quantity,
        expected_price=entry, filled_quantity=quantity, average_fill_price=entry,
        fee=position.entry_fee, fee_currency="USDT", status=OrderStatus.FILLED,
        slippage_percent=Decimal("0"), attempts=1, created_at=opened_at, submitted_at=opened_at,
        acknowledged_at=opened_at, filled_at=opened_at, finalized_at=opened_at)
    warning_minutes = strategy.effective_config().lifecycle.warning_threshold_minutes
    warning_at = opened_at + timedelta(minutes=warning_minutes)
    if warning_at <= now:
        position_transition(
            position, to_state=PositionState.WARNING, actor=ACTOR, warning_at=warning_at,
            reason=f"holding time reached the warning threshold ({warning_minutes} min)")
    return position


def _trades(strategies: dict[str, Strategy], replay: Replay, now: datetime,
            report: SeedReport) -> None:
    existing = Trade.objects.filter(external_ref__startswith=DEMO_REF)
    if existing.exists():
        report.present.append(f"closed trades ({existing.count()})")
        return
    rng = random.Random(20211115)  # the same demo history on every machine
    reasons = list(EXIT_REASONS)
    rng.shuffle(reasons)
    names = sorted(strategies)
    trades = []
    for number, reason in enumerate(reasons, 1):
        strategy = strategies[names[number % len(names)]]
        limit = strategy.effective_config().lifecycle.max_holding_time_minutes
        holding = timedelta(minutes=limit if reason == CloseReason.TIMEOUT
                            else rng.randint(10, limit - 10))
        closed_at = now - timedelta(hours=1) - TRADE_SPAN * (number - 1) / TRADE_COUNT \
            - timedelta(minutes=rng.randint(0, 300))
        trades.append(_trade(strategy, replay, number=number, reason=reason,
                             side=rng.choice([PositionSide.LONG, PositionSide.SHORT]),
                             quantity=Decimal(rng.choice([500, 800, 1000, 1500, 2000])),
                             opened_at=closed_at - holding, closed_at=closed_at))
    Trade.objects.bulk_create(trades)
    report.created["closed trades"] = len(trades)


def _trade(strategy: Strategy, replay: Replay, *, number: int, reason: str, side: str,
           quantity: Decimal, opened_at: datetime, closed_at: datetime) -> Trade:
    """A closed trade at the replayed prices, taker fees on both sides deducted."""
    entry = replay.price_at(opened_at)
    exit_price = replay.price_at(closed_at)
    direction = 1 if side == PositionSide.LONG else -1
    fees = _money((entry + exit_price) * quantity * TAKER_FEE)
    pnl = _money((exit_price - entry) * quantity * direction - fees)
    return Trade(
        strategy=strategy, symbol=SYMBOL, side=side, quantity=quantity, entry_price=entry,
        exit_price=exit_price, opened_at=opened_at, closed_at=closed_at, fees=fees, pnl=pnl,
        pnl_percent=(pnl / (entry * quantity) * 100).quantize(Decimal("0.000001")),
        holding_seconds=int((closed_at - opened_at).total_seconds()), exit_reason=reason,
        external_ref=f"{DEMO_REF}trade-{number:03d}", created_at=closed_at)


def _staff_user(username: str, report: SeedReport) -> None:
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        report.present.append(f"staff user {username!r}")
        return
    report.password = secrets.token_urlsafe(12)
    users.objects.create_superuser(username=username, email="", password=report.password)
    report.created["staff user"] = 1


def _count(report: SeedReport, label: str, created: bool, name: str) -> None:
    if created:
        report.created[label] = report.created.get(label, 0) + 1
    else:
        report.present.append(f"{label}: {name}")


def _money(value: Decimal) -> Decimal:
    return value.quantize(MONEY_STEP)
