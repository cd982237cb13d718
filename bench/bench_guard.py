"""Benchmark: the portfolio guard with 10,000 open positions.

1. The pre-trade gate's decision per order (``guard.gate.gate_order``: the share-locked
   read of the order's three scopes, every limit configured — notional, rate, open
   positions, symbol and account exposure — the ledger locks, the checks and the
   ledgers' new values, which ride in the order's insert statement), 2,000 entry orders
   one after the other, each decided inside its own transaction and savepoint (begun
   before the clock starts, as ``order_submit`` does) and rolled back (so every order
   meets the same book). Target: p95 ≤ 1 ms. The whole ``order_submit`` (decision + the
   durable insert carrying the ledgers' write + commit) is reported beside it, with and
   without the gate registered (alternating orders), so the gate's whole cost shows.
2. One evaluation (``guard.services.guard_evaluate``): every ledger counted exactly,
   live equity of 10 accounts and the platform from the positions, trades and candle
   marks, baselines moved, trips checked. Target: ≤ 50 ms.

Runs on its own PostgreSQL database (``BENCH_GUARD_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_guard``; created and migrated when
missing, its tables emptied before each run; under a runner configured on another
database it runs in a subprocess).

    .venv/bin/python -m bench.bench_guard [--quick] [--json]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bench.database import django_on_bench_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_guard"
TARGET_DECISION_MS = 1.0
TARGET_EVALUATION_MS = 50.0
ACCOUNTS, STRATEGIES_PER_ACCOUNT, SYMBOLS = 10, 5, 200
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LIMITS = {"maxOpenPositions": 100_000, "maxOrdersPerMinute": 1000, "maxNotionalPerOrder": 1e9,
          "maxExposurePercent": 10_000, "maxSymbolExposurePercent": 10_000,
          "dailyLossLimitPercent": 50, "maxDrawdownPercent": 50}


def _bench_url() -> str:
    return os.environ.get("BENCH_GUARD_DATABASE_URL", DEFAULT_URL)


def _reset(size: int) -> list:
    """Empty the tables; ``size`` open positions over 10 accounts, 50 strategies, 200 symbols,
    with a candle per symbol and a few hundred closed trades."""
    from django.db import connection

    from execution.models import Candle, ExchangeAccount, Order
    from guard.models import GuardTrip, OrderRefusal, ScopeLedger, TradingScope
    from lifecycle.models import Position, PositionEvent, PositionFill, Strategy, Trade

    models = (GuardTrip, OrderRefusal, ScopeLedger, TradingScope, Order, PositionEvent,
              PositionFill, Trade, Position, Candle, Strategy, ExchangeAccount)
    tables = ", ".join(model._meta.db_table for model in models)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}, execution_action RESTART IDENTITY CASCADE")
    strategies = []
    for a in range(ACCOUNTS):
        account = ExchangeAccount.objects.create(name=f"bench-guard-{a}", exchange_id="paper",
                                                 starting_capital=Decimal("10000000"))
        strategies += [Strategy.objects.create(name=f"bench-guard-{a}-{s}", account=account)
                       for s in range(STRATEGIES_PER_ACCOUNT)]
    price = Decimal("100")
    Position.objects.bulk_create([
        Position(strategy=strategies[i % len(strategies)], symbol=f"S{i % SYMBOLS}/USDT:USDT",
                 side="long" if i % 2 else "short", quantity=Decimal("2"),
                 initial_quantity=Decimal("2"), entry_price=price, opened_at=T0,
                 state_changed_at=T0, peak_price=price, trough_price=price,
                 last_price=price + (i % 7) - 3, last_price_at=T0 - timedelta(minutes=i % 9))
        for i in range(size)], batch_size=2000)
    Candle.objects.bulk_create([
        Candle(exchange_id="paper", symbol=f"S{s}/USDT:USDT", timeframe="5m",
               open_time=T0 - timedelta(minutes=5 * k), open=price, high=price + 1,
               low=price - 1, close=price + (s % 5) - 2, volume=Decimal("1000"))
        for s in range(SYMBOLS) for k in range(1, 4)])
    Trade.objects.bulk_create([
        Trade(strategy=strategies[i % len(strategies)], symbol="S1/USDT:USDT", side="long",
              quantity=Decimal("1"), entry_price=price, exit_price=price + 1,
              opened_at=T0 - timedelta(hours=2), closed_at=T0 - timedelta(hours=1),
              pnl=Decimal("1"), pnl_percent=Decimal("1"), holding_seconds=3600,
              exit_reason="signal") for i in range(500)])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables}")
    return strategies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _decisions(strategies: list, count: int) -> tuple[list[float], list[float], list[float]]:
    """(gate decisions, whole order_submit, order_submit with no gate registered) in ms."""
    from django.db import transaction

    from execution import handlers
    from execution.models import Order
    from execution.pipeline import order_submit
    from guard.gate import gate_order

    decided: list[float] = []
    for i in range(count):
        strategy = strategies[i % len(strategies)]
        order = Order(account=strategy.account, strategy=strategy,
                      symbol=f"S{i % SYMBOLS}/USDT:USDT", side="buy", quantity=Decimal("0.5"),
                      expected_price=Decimal("100"), client_order_id=f"bench-{i}")
        # As in ``order_submit``: the caller's transaction is open and the gate runs in the
        # savepoint of the insert it guards (both begun before the decision). What it
        # returns — the ledgers' new values — rides in that insert's statement.
        with transaction.atomic(), transaction.atomic():
            started = time.perf_counter()
            gate_order(order)
            decided.append((time.perf_counter() - started) * 1000)
            transaction.set_rollback(True)
    timed: dict[bool, list[float]] = {True: [], False: []}
    gated = handlers.registered()["pretrade_gate"]
    try:
        for i in range(count // 2):  # alternately with and without the gate: the same drift
            with_gate = i % 2 == 0
            handlers.register(pretrade_gate=gated if with_gate else (lambda order: None))
            strategy = strategies[i % len(strategies)]
            started = time.perf_counter()
            order_submit(account=strategy.account, strategy=strategy, symbol="S3/USDT:USDT",
                         side="buy", quantity=Decimal("0.5"), expected_price=Decimal("100"))
            timed[with_gate].append((time.perf_counter() - started) * 1000)
    finally:
        handlers.register(pretrade_gate=gated)
    return decided, timed[True], timed[False]


def bench_guard(quick: bool) -> list[dict]:
    import time_machine
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from guard.services import guard_evaluate
    from tradingsite.live_config import clear_cache

    call_command("migrate", verbosity=0, interactive=False)
    size, count, repeats = (1000, 200, 3) if quick else (10_000, 2000, 7)
    settings.LIVE_TRADING = {"portfolio": LIMITS}
    clear_cache()
    strategies = _reset(size)
    rows = []
    with time_machine.travel(T0, tick=True):
        evaluations = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = guard_evaluate()
            evaluations.append((time.perf_counter() - started) * 1000)
        decided, submitted, ungated = _decisions(strategies, count)
    best, median = min(evaluations[1:] or evaluations), statistics.median(evaluations[1:] or
                                                                          evaluations)
    p50, p95, p99 = (_percentile(decided, q) for q in (0.5, 0.95, 0.99))
    rows.append({
        "workload": f"guard: pre-trade decision per entry, every limit set [{connection.vendor}]",
        "size": f"{size} open positions",
        "figure": f"p50 {p50:.3f} ms, p95 {p95:.3f} ms, p99 {p99:.3f} ms ({count} orders); "
                  f"whole order_submit (decision, insert carrying the count, commit) p50 "
                  f"{_percentile(submitted, 0.5):.2f} / p95 {_percentile(submitted, 0.95):.2f} "
                  f"ms, without the gate {_percentile(ungated, 0.5):.2f} / "
                  f"{_percentile(ungated, 0.95):.2f} ms",
        "target": f"p95 ≤ {TARGET_DECISION_MS:g} ms", "met": p95 <= TARGET_DECISION_MS})
    rows.append({
        "workload": f"guard: equity and trip evaluation, 10 accounts [{connection.vendor}]",
        "size": f"{size} open positions",
        "figure": f"best {best:.1f} ms, median {median:.1f} ms of {len(evaluations) - 1} "
                  f"(first {evaluations[0]:.1f} ms); platform equity "
                  f"{result.equity:.0f}, trips {len(result.trips)}",
        "target": f"≤ {TARGET_EVALUATION_MS:g} ms", "met": median <= TARGET_EVALUATION_MS})
    return rows


def _in_subprocess(quick: bool) -> list[dict]:
    command = [sys.executable, "-m", "bench.bench_guard", "--json"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    out = subprocess.run(command + (["--quick"] if quick else []), check=True,
                         capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    if django_on_bench_database(_bench_url()):
        return bench_guard(quick)
    return _in_subprocess(quick)


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    if "--json" in argv:
        print(json.dumps(rows))
        return
    from bench.__main__ import render

    print(render(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
