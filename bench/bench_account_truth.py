"""Benchmark: live account truth — mark age, timeout lateness, crash to emergency close.

Real threads on the wall clock, on a PostgreSQL database of its own
(``BENCH_ACCOUNTS_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_accounts``; created and migrated
when missing, emptied before each part; when a runner has already configured Django
on another database, the parts run in a subprocess). Celery and Channels are in
memory.

* **mark age** — one paper account, 10,000 held positions on 50 symbols (random-walk
  feed), its stream owner (``execution.streams.AccountSync``) running as in production:
  streamed tickers become marks (at most once a second), then the price-driven danger
  of all 10,000 positions is recomputed. Every 0.5 s for 30 s the age of every
  position's mark is read; the row gives the p95 and the maximum over all of them.
  The same again with the stream switched off (one batched ``fetch_tickers`` every
  ``markRefreshSeconds``). Target: p95 ≤ 2 × markRefreshSeconds (10 s).
* **timeout lateness** — 10,000 positions whose warning threshold falls due over the
  next 20 s; the ``DeadlineScheduler`` runs; lateness = ``warning_at`` − due time of
  each position. Target: p95 ≤ 2 s (the beat's 15 s pass alone: up to 15 s).
* **crash → emergency close sent** — 1,000 positions on 50 symbols, the stream owner
  running; one symbol at a time crashes 15 % on the paper feed; latency = the close
  order's ``submitted_at`` − the moment of the crash, for each of its 20 positions.
  Actions run as soon as they are queued (eager Celery, in the owner's thread: the
  broker hop is measured by the execution benchmark). Target: p95 ≤ 5 s.

    .venv/bin/python -m bench.bench_account_truth [--quick] [--json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import numpy as np

from bench.database import django_on_bench_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_accounts"
SYMBOLS = 50
MARK_REFRESH = 5.0


def _bench_url() -> str:
    return os.environ.get("BENCH_ACCOUNTS_DATABASE_URL", DEFAULT_URL)


def _reset() -> None:
    from django.db import connection

    from execution.exchanges.paper import reset_paper_exchanges

    reset_paper_exchanges()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE execution_exchangeaccount, risk_healthsnapshot, risk_riskalert "
                       "RESTART IDENTITY CASCADE")


def _paper_account(name: str, *, streams: bool = True, health_threshold: int = 30):
    from lifecycle.models import Strategy
    from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

    account = ExchangeAccountFactory(
        name=name, starting_capital=Decimal("100000000"),
        live_trading={"accountSync": {"streams": streams,
                                      "markRefreshSeconds": MARK_REFRESH}},
        paper_config={"feed": {"type": "random_walk", "defaultPrice": "100",
                               "volatilityPercent": 0.02, "stepSeconds": 1},
                      "markets": {f"SYM{i}/USDT:USDT": {"amountStep": "0.001",
                                                         "priceStep": "0.0001"}
                                  for i in range(SYMBOLS)}})
    strategy: Strategy = StrategyFactory(name=f"{name}-strategy", account=account, live_trading={
        "riskMonitoring": {"healthScoreThreshold": health_threshold}})
    return account, strategy


def _positions(strategy, size: int, *, opened_at, entry: Decimal = Decimal("100")) -> None:
    from django.db import connection

    from lifecycle.models import Position

    Position.objects.bulk_create([
        Position(strategy=strategy, symbol=f"SYM{i % SYMBOLS}/USDT:USDT", side="long",
                 quantity=Decimal("1"), initial_quantity=Decimal("1"), entry_price=entry,
                 opened_at=opened_at(i) if callable(opened_at) else opened_at,
                 state_changed_at=opened_at(i) if callable(opened_at) else opened_at,
                 peak_price=entry, trough_price=entry)
        for i in range(size)], batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE lifecycle_position")


def _owner(account):
    from execution.streams import AccountSync, stream_lease_acquire

    assert stream_lease_acquire(account, "bench:1:a")
    sync = AccountSync(account.pk, owner="bench:1:a")
    sync.start()
    return sync


def _mark_ages(seconds: float) -> np.ndarray:
    from django.db import connection

    ages: list[float] = []
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT EXTRACT(EPOCH FROM (clock_timestamp() - last_price_at)) "
                           "FROM lifecycle_position WHERE state IN ('OPEN', 'WARNING', "
                           "'CRITICAL', 'CLOSING')")
            ages.extend(float(row[0]) if row[0] is not None else float("inf")
                        for row in cursor.fetchall())
            time.sleep(0.5)
    return np.array(ages)


def bench_mark_age(size: int, seconds: float, *, streams: bool) -> dict:
    from django.utils import timezone

    _reset()
    account, strategy = _paper_account("bench-marks", streams=streams)
    _positions(strategy, size, opened_at=timezone.now())
    sync = _owner(account)
    try:
        sync.wait_for(lambda: sync.marks_published > 0, 60)
        time.sleep(MARK_REFRESH)  # past the first refresh of every symbol
        ages = _mark_ages(seconds)
    finally:
        sync.stop()
    p95, worst = float(np.percentile(ages, 95)), float(ages.max())
    how = "paper stream" if streams else "REST fetch_tickers, no stream"
    return {"workload": f"mark age, {size:,} positions on {SYMBOLS} symbols ({how})",
            "size": size,
            "figure": f"p95 {p95:.2f} s, max {worst:.2f} s over {len(ages):,} readings "
                      f"({seconds:.0f} s); marks published {sync.marks_published:,}",
            "target": f"p95 ≤ {2 * MARK_REFRESH:g} s (2 × markRefreshSeconds)",
            "met": p95 <= 2 * MARK_REFRESH}


def bench_timeout_lateness(size: int, spread: float) -> dict:
    from django.db.models import F
    from django.utils import timezone

    from lifecycle.deadlines import DeadlineScheduler
    from lifecycle.models import Position, PositionState

    _reset()
    _, strategy = _paper_account("bench-deadlines")
    start = timezone.now() + timedelta(seconds=2)
    warning = timedelta(minutes=180)
    _positions(strategy, size,
               opened_at=lambda i: start + timedelta(seconds=spread * i / size) - warning)
    scheduler = DeadlineScheduler()
    scheduler.start()
    try:
        deadline = time.monotonic() + spread + 30
        while time.monotonic() < deadline and Position.objects.filter(
                state=PositionState.OPEN).exists():
            time.sleep(0.5)
    finally:
        scheduler.stop()
    late = np.array([row.total_seconds() for row in Position.objects.exclude(
        warning_at=None).annotate(late=F("warning_at") - F("opened_at") - warning
                                  ).values_list("late", flat=True)])
    moved = len(late)
    p95 = float(np.percentile(late, 95)) if moved else float("inf")
    return {"workload": f"timeout lateness, {size:,} positions due over {spread:.0f} s "
                        "(deadline scheduler)",
            "size": size,
            "figure": f"p95 {p95:.2f} s, max {late.max() if moved else float('inf'):.2f} s; "
                      f"{moved:,} of {size:,} warned; {scheduler.passes} passes",
            "target": "p95 ≤ 2 s", "met": moved == size and p95 <= 2.0}


def bench_crash_to_close(size: int, crashes: int) -> dict:
    from django.conf import settings
    from django.utils import timezone

    from execution.exchanges.paper import paper_exchange_for
    from execution.models import Order, OrderPurpose
    from tradingsite.celery import app

    _reset()
    account, strategy = _paper_account("bench-crash", health_threshold=40)
    _positions(strategy, size, opened_at=timezone.now())
    paper = paper_exchange_for(account)
    settings.CELERY_TASK_ALWAYS_EAGER = app.conf.task_always_eager = True
    sync = _owner(account)
    latencies: list[float] = []
    try:
        sync.wait_for(lambda: sync.marks_published >= SYMBOLS, 60)
        for k in range(crashes):
            symbol = f"SYM{k}/USDT:USDT"
            crashed_at = timezone.now()
            paper.set_price(symbol, paper.current_ticker(symbol).mark * Decimal("0.85"))
            expected = size // SYMBOLS
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and Order.objects.filter(
                    symbol=symbol, purpose=OrderPurpose.EMERGENCY_CLOSE,
                    submitted_at__isnull=False).count() < expected:
                time.sleep(0.05)
            latencies += [(at - crashed_at).total_seconds() for at in Order.objects.filter(
                symbol=symbol, purpose=OrderPurpose.EMERGENCY_CLOSE,
                submitted_at__isnull=False).values_list("submitted_at", flat=True)]
            time.sleep(1.0)
    finally:
        sync.stop()
        settings.CELERY_TASK_ALWAYS_EAGER = app.conf.task_always_eager = False
    expected_total = crashes * (size // SYMBOLS)
    values = np.array(latencies) if latencies else np.array([float("inf")])
    p95 = float(np.percentile(values, 95))
    return {"workload": f"price crash on the paper feed → emergency close sent, {size:,} "
                        f"positions, {crashes} symbols crashed 15 %",
            "size": expected_total,
            "figure": f"p95 {p95:.2f} s, max {values.max():.2f} s; {len(latencies)} of "
                      f"{expected_total} closes sent",
            "target": "p95 ≤ 5 s", "met": len(latencies) == expected_total and p95 <= 5.0}


def bench_all(quick: bool) -> list[dict]:
    from django.core.management import call_command

    from tradingsite.celery import app

    call_command("migrate", verbosity=0, interactive=False)
    app.finalize()
    size = 1000 if quick else 10_000
    seconds = 10 if quick else 30
    return [
        bench_mark_age(size, seconds, streams=True),
        bench_mark_age(size, seconds, streams=False),
        bench_timeout_lateness(size, 20.0),
        bench_crash_to_close(1000, 5 if quick else 10),
    ]


def _in_subprocess(quick: bool) -> list[dict]:
    command = [sys.executable, "-m", "bench.bench_account_truth", "--json"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "REDIS_URL")}
    out = subprocess.run(command + (["--quick"] if quick else []), check=True,
                         capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    if django_on_bench_database(_bench_url()):
        return bench_all(quick)
    return _in_subprocess(quick)


def main(argv: list[str]) -> None:
    import logging

    logging.disable(logging.WARNING)  # emergency closes and the like are expected here
    rows = run(quick="--quick" in argv)
    if "--json" in argv:
        print(json.dumps(rows))
        return
    from bench.__main__ import render

    print(render(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
