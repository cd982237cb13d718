"""A realistic book for the browser tests and the dashboard screenshots.

Six supervised positions in every lifecycle state and danger level, their health
history, recent candles (so a risk check scores them from market data), entry/close
orders, events, alerts, one position closed by its timeout two hours ago (with its
trade, candles, orders and the close action's result) and ~140 closed trades over two
months (that one included).
Deterministic: the same ``now`` gives the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from execution.models import (
    ActionKind,
    ActionState,
    Candle,
    OrderPurpose,
    OrderSide,
    OrderStatus,
)
from lifecycle.models import DangerLevel, Position, PositionSide, PositionState
from risk.models import AlertSeverity
from tradingsite.testing.factories import (
    ActionFactory,
    ExchangeAccountFactory,
    HealthSnapshotFactory,
    OrderFactory,
    PositionEventFactory,
    PositionFactory,
    RiskAlertFactory,
    StrategyFactory,
    TradeFactory,
)


@dataclass(frozen=True)
class Book:
    positions: dict[str, Position]
    trade_count: int


# symbol, strategy, side, qty, entry, mark, minutes open, state, final score, level,
# components (time, drawdown, volume, volatility, profitability)
OPEN_BOOK = [
    ("BTC/USDT:USDT", "trend-5m", "long", "0.25", "64210.5", "64480.0", 47, "OPEN", "82.4", "SAFE",
     (80.4, 96.0, 71.0, 66.5, 88.0)),
    ("ETH/USDT:USDT", "trend-5m", "short", "3.2", "3412.80", "3398.10", 135, "OPEN", "71.0", "SAFE",
     (43.8, 88.0, 74.2, 69.0, 70.5)),
    ("SOL/USDT:USDT", "meanrev-15m", "long", "40", "148.32", "145.10", 200, "WARNING", "47.5",
     "WARNING", (16.7, 41.0, 58.5, 52.0, 38.0)),
    ("DOGE/USDT:USDT", "meanrev-15m", "long", "25000", "0.15872", "0.15190", 229, "WARNING",
     "24.1", "CRITICAL", (4.6, 12.0, 8.5, 44.0, 21.0)),
    ("XRP/USDT:USDT", "trend-5m", "short", "6000", "0.5231", "0.5204", 12, "OPEN", "90.2", "SAFE",
     (95.0, 98.0, 80.0, 84.0, 92.0)),
    ("AVAX/USDT:USDT", "trend-5m", "long", "120", "27.45", "27.12", 246, "CLOSING", "38.9",
     "WARNING", (0.0, 52.0, 61.0, 48.0, 33.0)),
]
TRADE_SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT",
                 "DOGE/USDT:USDT", "AVAX/USDT:USDT", "LINK/USDT:USDT"]


def _d(value: float | str, places: str = "0.01") -> Decimal:
    return Decimal(str(value)).quantize(Decimal(places))


def seed_book(now: datetime, *, trades: int = 140, seed: int = 7) -> Book:
    rng = random.Random(seed)
    # The paper exchange quotes each seeded market at its mark (a close fills near it).
    prices = {row[0]: row[5] for row in OPEN_BOOK} | {"LINK/USDT:USDT": "14.57"}
    account = ExchangeAccountFactory(name="paper-main", starting_capital=Decimal("25000"),
                                     paper_config={"feed": {"type": "manual", "prices": prices}})
    strategies = {name: StrategyFactory(name=name, account=account, timeframe=name.split("-")[1])
                  for name in ("trend-5m", "meanrev-15m")}
    positions: dict[str, Position] = {}
    for n, (symbol, strat, side, qty, entry, mark, minutes, state, score, level,
            comps) in enumerate(OPEN_BOOK):
        opened = now - timedelta(minutes=minutes, seconds=17 * n)
        entry_d, mark_d = Decimal(entry), Decimal(mark)
        position = PositionFactory(
            strategy=strategies[strat], symbol=symbol, side=side, quantity=Decimal(qty),
            entry_price=entry_d, opened_at=opened, state=state,
            state_changed_at=opened + timedelta(minutes=min(minutes, 180)),
            warning_at=opened + timedelta(minutes=180) if minutes >= 180 else None,
            critical_at=opened + timedelta(minutes=240) if minutes >= 240 else None,
            closing_at=now - timedelta(minutes=1) if state == "CLOSING" else None,
            close_reason="timeout" if state == "CLOSING" else "",
            close_requested_by="timeout" if state == "CLOSING" else "",
            peak_price=max(entry_d, mark_d) * Decimal("1.004"),
            trough_price=min(entry_d, mark_d) * Decimal("0.996"),
            last_price=mark_d, last_price_at=now - timedelta(seconds=20),
            health_score=Decimal(score), danger_level=level,
            health_checked_at=now - timedelta(seconds=40))
        positions[symbol.split("/")[0]] = position
        _seed_history(rng, position, opened, now, Decimal(score), level, comps)
        _seed_candles(rng, symbol, strategies[strat].timeframe, mark_d, now)
        _seed_events(position, opened, minutes, state)
        OrderFactory(account=account, position=position, symbol=symbol,
                     side=OrderSide.BUY if side == PositionSide.LONG else OrderSide.SELL,
                     purpose=OrderPurpose.ENTRY, quantity=Decimal(qty), filled_quantity=Decimal(qty),
                     expected_price=entry_d, average_fill_price=entry_d,
                     status=OrderStatus.FILLED, attempts=1, latency_ms=140 + 9 * n,
                     slippage_percent=Decimal("0.012") * (n % 3), created_at=opened,
                     filled_at=opened + timedelta(milliseconds=180))
    avax = positions["AVAX"]
    action = ActionFactory(kind=ActionKind.EMERGENCY_CLOSE, position=avax, reason="timeout",
                           requested_by="timeout", state=ActionState.RUNNING,
                           idempotency_key=f"seed-close-{avax.pk}",
                           created_at=now - timedelta(minutes=1, seconds=20))
    OrderFactory(account=account, position=avax, action=action, symbol=avax.symbol,
                 side=OrderSide.SELL, purpose=OrderPurpose.EMERGENCY_CLOSE, reduce_only=True,
                 quantity=avax.quantity, expected_price=Decimal("27.12"),
                 status=OrderStatus.SUBMITTING, attempts=2, retries=1,
                 last_error="RequestTimeout: bybit POST /v5/order/create timed out",
                 created_at=now - timedelta(minutes=1))
    _seed_alerts(positions, now)
    positions["LINK"] = _seed_closed_position(rng, account, strategies["trend-5m"], now)
    _seed_trades(rng, strategies, now, trades - 1)
    return Book(positions=positions, trade_count=trades)


def _seed_closed_position(rng: random.Random, account, strategy, now: datetime) -> Position:
    """LINK long, held 240 min, emergency-closed by its timeout: +22.21 USDT realised."""
    opened = now - timedelta(hours=6, minutes=3)
    closed = opened + timedelta(minutes=240, seconds=41)
    qty, entry, exit_price = Decimal("150"), Decimal("14.4120"), Decimal("14.5700")
    fees = Decimal("1.49")
    pnl = (exit_price - entry) * qty - fees  # 22.21
    position = PositionFactory(
        strategy=strategy, symbol="LINK/USDT:USDT", side=PositionSide.LONG, quantity=Decimal("0"),
        initial_quantity=qty, entry_price=entry, opened_at=opened, state=PositionState.CLOSED,
        state_changed_at=closed, warning_at=opened + timedelta(minutes=180),
        critical_at=opened + timedelta(minutes=240), closing_at=opened + timedelta(minutes=240, seconds=3),
        closed_at=closed, close_reason="timeout", close_requested_by="timeout",
        peak_price=Decimal("14.6310"), trough_price=Decimal("14.3520"), last_price=exit_price,
        last_price_at=closed, health_score=Decimal("63.5"), danger_level=DangerLevel.SAFE,
        health_checked_at=closed - timedelta(minutes=2), closed_quantity=qty,
        exit_value=exit_price * qty, exit_fees=Decimal("0.75"), entry_fee=Decimal("0.74"))
    _seed_history(rng, position, opened, closed, Decimal("63.5"), "SAFE",
                  (0.0, 84.0, 70.0, 66.0, 71.0))
    _seed_candles(rng, "LINK/USDT:USDT", "5m", exit_price, now)
    for minutes, kind, from_state, to_state, reason, actor in [
            (0, "opened", "", "OPEN", "opened from entry fill", "execution"),
            (180, "transition", "OPEN", "WARNING", "held 180 min (warning threshold)", "timeout"),
            (240, "transition", "WARNING", "CRITICAL", "held 240 min (max holding time)",
             "timeout")]:
        PositionEventFactory(position=position, kind=kind, from_state=from_state,
                             to_state=to_state, reason=reason, actor=actor,
                             created_at=opened + timedelta(minutes=minutes))
    PositionEventFactory(position=position, kind="transition", from_state="CRITICAL",
                         to_state="CLOSING", reason="timeout: closing", actor="execution",
                         created_at=opened + timedelta(minutes=240, seconds=3))
    PositionEventFactory(position=position, kind="transition", from_state="CLOSING",
                         to_state="CLOSED", reason="timeout: closed", actor="execution",
                         created_at=closed)
    OrderFactory(account=account, position=position, symbol=position.symbol, side=OrderSide.BUY,
                 purpose=OrderPurpose.ENTRY, quantity=qty, filled_quantity=qty,
                 expected_price=entry, average_fill_price=entry, status=OrderStatus.FILLED,
                 attempts=1, latency_ms=131, created_at=opened,
                 filled_at=opened + timedelta(milliseconds=160))
    action = ActionFactory(kind=ActionKind.EMERGENCY_CLOSE, position=position, reason="timeout",
                           requested_by="timeout", state=ActionState.DONE,
                           idempotency_key=f"seed-close-{position.pk}",
                           created_at=opened + timedelta(minutes=240, seconds=2),
                           result={"order": f"close-{position.pk}", "status": "filled",
                                   "filled": "150", "average_price": "14.57",
                                   "slippage_percent": "0.0137", "trade": None,
                                   "pnl": "22.21", "exit_price": "14.57"})
    OrderFactory(account=account, position=position, action=action, symbol=position.symbol,
                 side=OrderSide.SELL, purpose=OrderPurpose.EMERGENCY_CLOSE, reduce_only=True,
                 quantity=qty, filled_quantity=qty, expected_price=Decimal("14.5720"),
                 average_fill_price=exit_price, slippage_percent=Decimal("0.0137"),
                 status=OrderStatus.FILLED, attempts=1, latency_ms=148,
                 created_at=opened + timedelta(minutes=240, seconds=3), filled_at=closed)
    trade = TradeFactory(strategy=strategy, position=position, symbol=position.symbol,
                         side=PositionSide.LONG, quantity=qty, entry_price=entry,
                         exit_price=exit_price, opened_at=opened, closed_at=closed, fees=fees,
                         pnl=pnl, pnl_percent=(pnl / (entry * qty) * 100).quantize(Decimal("0.000001")),
                         holding_seconds=int((closed - opened).total_seconds()),
                         exit_reason="timeout")
    action.result = {**action.result, "trade": trade.pk}
    action.save(update_fields=["result"])
    return position


def _seed_history(rng: random.Random, position: Position, opened: datetime, now: datetime,
                  final: Decimal, level: str, comps: tuple[float, ...]) -> None:
    """A health check every 5 minutes, drifting from a healthy start to today's score."""
    checks = max(2, int((now - opened).total_seconds() // 300))
    start = min(96.0, float(final) + 25)
    for i in range(checks):
        frac = i / (checks - 1)
        score = start + (float(final) - start) * frac + rng.uniform(-3, 3) * (1 - frac)
        score = max(0.0, min(100.0, score))
        last = i == checks - 1
        value = final if last else _d(score)
        HealthSnapshotFactory(
            position=position, taken_at=now - timedelta(seconds=40) if last
            else opened + timedelta(minutes=5 * (i + 1)),
            score=value,
            time_score=_d(comps[0] if last else max(0.0, 100 - 100 * (5 * (i + 1)) / 240)),
            drawdown_score=_d(comps[1] if last else min(100.0, score + 8)),
            volume_score=_d(comps[2] if last else min(100.0, score + rng.uniform(-8, 8))),
            volatility_score=_d(comps[3] if last else min(100.0, score + rng.uniform(-6, 6))),
            profitability_score=_d(comps[4] if last else min(100.0, score + rng.uniform(-9, 4))),
            danger_level=level if last else (
                DangerLevel.SAFE if score >= 60 else DangerLevel.WARNING if score >= 30
                else DangerLevel.CRITICAL),
            price=position.last_price)


TIMEFRAME_MINUTES = {"5m": 5, "15m": 15}
CANDLES = 120


def _seed_candles(rng: random.Random, symbol: str, timeframe: str, last: Decimal,
                  now: datetime) -> None:
    """A random walk of closed candles ending at the mark price, volume fading lately."""
    step = timedelta(minutes=TIMEFRAME_MINUTES[timeframe])
    end = now.replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % TIMEFRAME_MINUTES[timeframe])
    closes = [float(last)]
    for _ in range(CANDLES - 1):
        closes.append(closes[-1] * (1 + rng.gauss(0, 0.0025)))
    closes.reverse()
    places = Decimal(10) ** last.as_tuple().exponent
    rows = []
    for k, close in enumerate(closes):
        volume = rng.uniform(800, 1200) * (0.5 if k > CANDLES - 4 else 1.0)
        c = Decimal(str(close)).quantize(places)
        spread = (c * Decimal("0.0015")).quantize(places)
        rows.append(Candle(exchange_id="paper", symbol=symbol, timeframe=timeframe,
                           open_time=end - step * (CANDLES - k), open=c, high=c + spread,
                           low=c - spread, close=c, volume=_d(volume)))
    Candle.objects.bulk_create(rows)


def _seed_events(position: Position, opened: datetime, minutes: int, state: str) -> None:
    PositionEventFactory(position=position, kind="opened", from_state="", to_state="OPEN",
                         reason="opened from entry fill", actor="execution", created_at=opened)
    if minutes >= 180:
        PositionEventFactory(position=position, kind="transition", from_state="OPEN",
                             to_state="WARNING", reason="held 180 min (warning threshold)",
                             actor="timeout", created_at=opened + timedelta(minutes=180))
    if minutes >= 240:
        PositionEventFactory(position=position, kind="transition", from_state="WARNING",
                             to_state="CRITICAL", reason="held 240 min (max holding time)",
                             actor="timeout", created_at=opened + timedelta(minutes=240))
    if state == PositionState.CLOSING:
        PositionEventFactory(position=position, kind="close_requested", from_state="",
                             to_state="", reason="timeout: close requested", actor="timeout",
                             created_at=opened + timedelta(minutes=240, seconds=2))
        PositionEventFactory(position=position, kind="transition", from_state="CRITICAL",
                             to_state="CLOSING", reason="timeout: closing", actor="execution",
                             created_at=opened + timedelta(minutes=240, seconds=3))


def _seed_alerts(positions: dict[str, Position], now: datetime) -> None:
    RiskAlertFactory(position=positions["DOGE"], severity=AlertSeverity.CRITICAL,
                     kind="danger_critical",
                     message="Health score 24.1 is below the critical threshold 30",
                     first_seen=now - timedelta(minutes=14), last_seen=now - timedelta(seconds=40),
                     occurrences=3)
    RiskAlertFactory(position=positions["DOGE"], severity=AlertSeverity.WARNING,
                     kind="component_collapse_volume",
                     message="Volume component collapsed to 8.5 (recent volume 0.3× average)",
                     first_seen=now - timedelta(minutes=9), last_seen=now - timedelta(seconds=40),
                     occurrences=2)
    RiskAlertFactory(position=positions["SOL"], severity=AlertSeverity.WARNING,
                     kind="danger_warning",
                     message="Health score 47.5 is below the warning threshold 60",
                     first_seen=now - timedelta(minutes=31), last_seen=now - timedelta(minutes=1))
    RiskAlertFactory(position=positions["AVAX"], severity=AlertSeverity.CRITICAL,
                     kind="timeout", message="Held 240 min: emergency close queued",
                     first_seen=now - timedelta(minutes=6), last_seen=now - timedelta(minutes=6))
    RiskAlertFactory(position=positions["ETH"], severity=AlertSeverity.WARNING,
                     kind="danger_warning", message="Health score 58.2 fell below 60",
                     first_seen=now - timedelta(minutes=55), last_seen=now - timedelta(minutes=48),
                     resolved_at=now - timedelta(minutes=44))


def _seed_trades(rng: random.Random, strategies: dict, now: datetime, count: int) -> None:
    """Closed trades spread over 60 days, a few today, with a modest positive edge."""
    names = list(strategies)
    for i in range(count):
        days_ago = 60 * (1 - i / count) ** 1.3 if i < count - 6 else rng.uniform(0.02, 0.3)
        closed = now - timedelta(days=days_ago, minutes=rng.randint(0, 50))
        holding = timedelta(minutes=rng.randint(8, 235))
        symbol = rng.choice(TRADE_SYMBOLS)
        side = rng.choice([PositionSide.LONG, PositionSide.SHORT])
        entry = Decimal(str(round(rng.uniform(20, 120), 4)))
        pnl_pct = rng.gauss(0.25, 1.4)
        qty = Decimal(str(round(rng.uniform(5, 40), 3)))
        direction = 1 if side == PositionSide.LONG else -1
        exit_price = (entry * (1 + Decimal(str(pnl_pct / 100)) * direction)).quantize(Decimal("0.0001"))
        fees = (entry * qty * Decimal("0.0011")).quantize(Decimal("0.0001"))
        pnl = ((exit_price - entry) * qty * direction - fees).quantize(Decimal("0.0001"))
        TradeFactory(strategy=strategies[names[i % 2]], symbol=symbol, side=side, quantity=qty,
                     entry_price=entry, exit_price=exit_price, opened_at=closed - holding,
                     closed_at=closed, fees=fees, pnl=pnl,
                     pnl_percent=(pnl / (entry * qty) * 100).quantize(Decimal("0.000001")),
                     holding_seconds=int(holding.total_seconds()),
                     exit_reason=rng.choice(["signal"] * 6 + ["timeout", "risk", "manual"]))

