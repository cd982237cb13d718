"""Benchmark: one timeout pass (``lifecycle.services.check_timeouts``) over 10,000 open positions.

Runs on its own PostgreSQL database (``BENCH_LIFECYCLE_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_lifecycle``; created and migrated
when missing, its position tables emptied before each run). Celery and Channels use
the in-memory broker and layer, so the figures are the database pass plus the
after-commit dispatch and live push, not a broker round trip.

    .venv/bin/python -m bench.bench_lifecycle [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_lifecycle"
TARGET_SECONDS = 0.5
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _setup_django() -> None:
    """Point Django at the bench database unless a runner configured it already."""
    from django.conf import settings

    if not settings.configured:
        url = os.environ.get("BENCH_LIFECYCLE_DATABASE_URL", DEFAULT_URL)
        os.environ["DATABASE_URL"] = url
        os.environ.pop("REDIS_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
        _create_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _create_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


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

    from lifecycle.services import check_timeouts

    with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = check_timeouts()
        elapsed = time.perf_counter() - started
    return elapsed, len(queries), result


def run(quick: bool = False) -> list[dict]:
    _setup_django()
    from django.db import connection

    from tradingsite.celery import app

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


def _print_table(rows: list[dict]) -> None:
    headers = ["workload", "size", "figure", "target", "met"]
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


if __name__ == "__main__":
    _print_table(run(quick="--quick" in sys.argv))
