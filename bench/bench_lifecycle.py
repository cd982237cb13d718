"""Benchmark: one timeout pass (``lifecycle.services.timeout_pass_run``) over 10,000 open positions.

Runs on its own PostgreSQL database (``BENCH_LIFECYCLE_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_lifecycle``; created and migrated
when missing, its position tables emptied before each run; when a runner has already
configured Django on another database, the passes run in a subprocess). Celery and Channels use
the in-memory broker and layer, so the figures are the database pass plus the
after-commit dispatch and live push, not a broker round trip.

    .venv/bin/python -m bench.bench_lifecycle [--quick] [--json]
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

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_lifecycle"
TARGET_SECONDS = 0.5
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)




def _bench_url() -> str:
    return os.environ.get("BENCH_LIFECYCLE_DATABASE_URL", DEFAULT_URL)






def _reset(size: int):
    """Empty the position tables and bulk-create ``size`` OPEN positions opened at T0."""
    from django.db import connection

    from execution.models import Action
    from lifecycle.models import Position, PositionEvent, PositionFill, Trade
    from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory

    tables = [m._meta.db_table for m in (Action, PositionEvent, PositionFill, Trade, Position)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    strategy = StrategyFactory(name="bench-lifecycle",
                               account=ExchangeAccountFactory(name="bench-lifecycle"))
    price = Decimal("50000")
    Position.objects.bulk_create([
        Position(strategy=strategy, symbol=f"SYM{i % 200}/USDT:USDT",
                 side="long" if i % 2 else "short", quantity=Decimal("0.5"),
                 initial_quantity=Decimal("0.5"), entry_price=price, opened_at=T0,
                 state_changed_at=T0, peak_price=price, trough_price=price)
        for i in range(size)], batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(tables)}")


def _timed_pass(at: datetime) -> tuple[float, int, object]:
    import time_machine
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from lifecycle.services import timeout_pass_run

    with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = timeout_pass_run()
        elapsed = time.perf_counter() - started
    return elapsed, len(queries), result


def bench_passes(quick: bool) -> list[dict]:
    from django.core.management import call_command
    from django.db import connection

    from tradingsite.celery import app

    call_command("migrate", verbosity=0, interactive=False)
    app.finalize()  # a worker has its task registry built before the first pass
    size, repeats = (1000, 1) if quick else (10_000, 3)
    steps = [
        ("timeout pass, none due (steady state)", 90, "warned", 0),
        ("timeout pass, all cross the warning threshold", 180, "warned", size),
        ("timeout pass, all cross the max holding time (+ close actions)", 240, "close_actions",
         size),
        ("timeout pass, all already CRITICAL with open closes", 241, "close_actions", 0),
    ]
    timings: dict[str, list[float]] = {name: [] for name, *_ in steps}
    outcome: dict[str, tuple[int, bool]] = {}
    for _ in range(repeats):
        _reset(size)
        for name, minutes, counter, expected in steps:
            elapsed, queries, result = _timed_pass(T0 + timedelta(minutes=minutes))
            timings[name].append(elapsed)
            ok = outcome.get(name, (queries, True))[1] and getattr(result, counter) == expected
            outcome[name] = (queries, ok)
    rows = []
    for name, _, counter, expected in steps:
        best, median = min(timings[name]), statistics.median(timings[name])
        queries, ok = outcome[name]
        rows.append({
            "workload": f"{name} [{connection.vendor}]",
            "size": size,
            "figure": f"best {best:.3f} s, median {median:.3f} s of {repeats}; {queries} queries; "
                      f"{counter}={expected if ok else 'WRONG'}",
            "target": f"≤ {TARGET_SECONDS} s",
            "met": ok and best <= TARGET_SECONDS,
        })
    return rows


def _in_subprocess(quick: bool) -> list[dict]:
    command = [sys.executable, "-m", "bench.bench_lifecycle", "--json"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    out = subprocess.run(command + (["--quick"] if quick else []), check=True,
                         capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout)


def run(quick: bool = False) -> list[dict]:
    if django_on_bench_database(_bench_url()):
        return bench_passes(quick)
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
