"""Analytics benchmark: performance reports over 10k / 100k / 1M closed trades in PostgreSQL.

Measures, per size: the metrics alone on in-memory arrays, quantstats computing its
equivalent metrics on the same data (for the ratio), and the full report end to end
(database fetch + metrics); on the largest history also the TODAY, WEEK and MONTH
reports. Uses its own PostgreSQL database (``BENCH_ANALYTICS_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_analytics``), created and migrated
on first use. Trades are generated with a fixed seed, bulk-loaded with a binary COPY
into a staging table and inserted in close order with one ``INSERT … SELECT``; a
loaded dataset is reused while its size and day match.

Run alone: ``.venv/bin/python -m bench.bench_analytics [--quick]``.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import numpy as np

ALIAS = "bench_analytics"
DATABASE_URL = os.environ.get("BENCH_ANALYTICS_DATABASE_URL",
                              "postgres://postgres@127.0.0.1:5432/trading_bench_analytics")
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000,)
HISTORY_DAYS = 730
SEED = 20_260_601
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT")
REASONS = ("signal", "timeout", "risk", "manual", "shutdown")


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def _ensure_database() -> None:
    """Create the bench database if needed and register it as the ``bench_analytics`` alias."""
    import dj_database_url
    import psycopg
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    parsed = urlparse(DATABASE_URL)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    if ALIAS not in connections.settings:
        configured = connections.configure_settings({
            DEFAULT_DB_ALIAS: dict(connections.settings[DEFAULT_DB_ALIAS]),
            ALIAS: dj_database_url.parse(DATABASE_URL)})
        connections.settings[ALIAS] = configured[ALIAS]
    # The executor, not the migrate command: post_migrate receivers (beat schedule
    # seeding) write to the default database, which may be another one.
    executor = MigrationExecutor(connections[ALIAS])
    executor.migrate(executor.loader.graph.leaf_nodes())


# --- data -------------------------------------------------------------------------------------


def _generate(size: int, now_us: int) -> dict[str, np.ndarray]:
    """Closed trades spread over the last two years up to a minute ago, in close order."""
    rng = np.random.default_rng(SEED + size)
    closed = np.sort(now_us - 60_000_000 - rng.integers(0, HISTORY_DAYS * 86_400_000_000, size))
    pnl = np.round(rng.normal(0.4, 20.0, size), 4)
    return {
        "closed_us": closed,
        "holding": rng.integers(60, 4 * 3600, size).astype(np.int32),
        "pnl": pnl,
        "pnl_percent": np.round(pnl / 50.0, 6),
        "fees": np.round(rng.uniform(0.01, 1.0, size), 4),
        "strategy": rng.integers(0, 3, size).astype(np.int16),
        "symbol": rng.integers(0, len(SYMBOLS), size).astype(np.int16),
        "side": rng.integers(0, 2, size).astype(np.int16),
        "reason": rng.choice(len(REASONS), size, p=[0.7, 0.1, 0.1, 0.05, 0.05]).astype(np.int16),
    }


_STAGE_COLUMNS = (("closed_us", "int8", ">i8"), ("holding", "int4", ">i4"),
                  ("pnl", "float8", ">f8"), ("pnl_percent", "float8", ">f8"),
                  ("fees", "float8", ">f8"), ("strategy", "int8", ">i8"),
                  ("symbol", "int2", ">i2"), ("side", "int2", ">i2"), ("reason", "int2", ">i2"))


def _binary_copy_payload(data: dict[str, np.ndarray]) -> bytes:
    """PostgreSQL binary COPY: fixed-width rows built as one numpy record array."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for name, _, dtype in _STAGE_COLUMNS:
        fields += [(f"{name}_len", ">i4"), (name, dtype)]
    rows = np.empty(len(data["pnl"]), dtype=np.dtype(fields))
    rows["count"] = len(_STAGE_COLUMNS)
    for name, _, dtype in _STAGE_COLUMNS:
        rows[f"{name}_len"] = np.dtype(dtype).itemsize
        rows[name] = data[name]
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    return header + rows.tobytes() + b"\xff\xff"


def _load(size: int, now: datetime) -> None:
    """Replace the trades of the bench database with ``size`` generated trades."""
    from django.db import connections, transaction

    from analytics.periods import to_micros
    from execution.models import ExchangeAccount
    from lifecycle.models import Strategy

    data = _generate(size, to_micros(now))
    with transaction.atomic(using=ALIAS):
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("TRUNCATE lifecycle_trade, analytics_metricsnapshot, "
                           "analytics_realisedpnlcheckpoint")
        accounts = [ExchangeAccount.objects.using(ALIAS).update_or_create(
            name=f"bench-{i}", defaults={"exchange_id": "paper", "starting_capital": capital})[0]
            for i, capital in enumerate((100_000, 50_000))]
        strategies = [Strategy.objects.using(ALIAS).update_or_create(
            name=f"bench-{i}", defaults={"account": accounts[min(i, 1)]})[0] for i in range(3)]
        data["strategy"] = np.asarray([s.pk for s in strategies], np.int64)[data["strategy"]]
        columns = ", ".join(f"{name} {pg}" for name, pg, _ in _STAGE_COLUMNS)
        with connections[ALIAS].cursor() as cursor:
            cursor.execute(f"CREATE TEMP TABLE bench_trade_stage ({columns}) ON COMMIT DROP")
            raw = cursor.cursor
            with raw.copy("COPY bench_trade_stage FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_copy_payload(data))
            symbols = "ARRAY[" + ", ".join(f"'{s}'" for s in SYMBOLS) + "]"
            reasons = "ARRAY[" + ", ".join(f"'{r}'" for r in REASONS) + "]"
            cursor.execute(f"""
                INSERT INTO lifecycle_trade (strategy_id, symbol, side, quantity, entry_price,
                    exit_price, opened_at, closed_at, fees, pnl, pnl_percent, holding_seconds,
                    exit_reason, external_ref, created_at)
                SELECT strategy, ({symbols})[symbol + 1],
                       CASE side WHEN 0 THEN 'long' ELSE 'short' END, 1, 100,
                       round((100 * (1 + pnl_percent / 100))::numeric, 10),
                       'epoch'::timestamptz + (closed_us - holding * 1000000::int8)
                           * interval '1 microsecond',
                       'epoch'::timestamptz + closed_us * interval '1 microsecond',
                       fees::numeric, pnl::numeric, pnl_percent::numeric, holding,
                       ({reasons})[reason + 1], '',
                       'epoch'::timestamptz + closed_us * interval '1 microsecond'
                FROM bench_trade_stage ORDER BY closed_us""")
        with connections[ALIAS].cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS bench_analytics_dataset "
                           "(size int8, day date)")
            cursor.execute("DELETE FROM bench_analytics_dataset")
            cursor.execute("INSERT INTO bench_analytics_dataset VALUES (%s, %s)",
                           [size, now.date()])
    with connections[ALIAS].cursor() as cursor:
        # Sets hint bits and the visibility map now, not during the first timed read.
        cursor.execute("VACUUM ANALYZE lifecycle_trade")


def _loaded(size: int, now: datetime) -> bool:
    from django.db import connections

    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_analytics_dataset') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return False
        cursor.execute("SELECT size, day FROM bench_analytics_dataset")
        row = cursor.fetchone()
    return row == (size, now.date())


# --- timing -------------------------------------------------------------------------------------


def _samples(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls (the machine is shared: report the median)."""
    gc.collect()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(_samples(fn, repeat))


def _quantstats_equivalents(series: Any, start_equity: float) -> Callable[[], dict]:
    """quantstats computing what our report computes, from the same in-memory arrays."""
    import pandas as pd
    import quantstats as qs

    def compute() -> dict:
        equity_before = start_equity + np.concatenate(([0.0], np.cumsum(series.pnl)[:-1]))
        index = pd.to_datetime(series.closed_at_us, unit="us")
        per_trade = pd.Series(series.pnl / equity_before, index=index)
        daily_equity = start_equity + pd.Series(series.pnl, index=index).resample("D").sum().cumsum()
        daily = daily_equity.pct_change().fillna(daily_equity.iloc[0] / start_equity - 1)
        return {
            "win_rate": qs.stats.win_rate(per_trade),
            "profit_factor": qs.stats.profit_factor(per_trade),
            "avg_win": qs.stats.avg_win(per_trade),
            "avg_loss": qs.stats.avg_loss(per_trade),
            "payoff_ratio": qs.stats.payoff_ratio(per_trade),
            "consecutive_wins": qs.stats.consecutive_wins(per_trade),
            "consecutive_losses": qs.stats.consecutive_losses(per_trade),
            "max_drawdown": qs.stats.max_drawdown(per_trade),
            "sharpe": qs.stats.sharpe(daily, periods=365),
            "sortino": qs.stats.sortino(daily, periods=365),
            "calmar": qs.stats.calmar(daily, periods=365),
            "max_daily_drawdown": qs.stats.max_drawdown(daily),
        }

    return compute


def _row(workload: str, size: int | str, figure: str, target: str, met: bool) -> dict:
    return {"workload": workload, "size": size, "figure": figure, "target": target,
            "met": bool(met)}


def _bench_size(size: int, now: datetime, quick: bool) -> list[dict]:
    from django.utils import timezone

    from analytics import selectors, services
    from analytics.metrics import PerformanceInputs, performance
    from analytics.periods import Period
    from analytics.selectors import TradeFilters

    if not _loaded(size, now):
        started = time.perf_counter()
        _load(size, now)
        print(f"  loaded {size:,} trades in {time.perf_counter() - started:.1f} s", flush=True)
    rows = []
    request = services.ReportRequest()
    repeat = 3 if quick else (5 if size >= 1_000_000 else 10)

    services.performance_report(request, now=now, using=ALIAS)  # warm the caches
    # The arrays the report works on, fetched once: the metrics alone run on these.
    fetch_s = _median_seconds(lambda: selectors.trade_series(
        selectors.trades_in(TradeFilters(), using=ALIAS), ALIAS), repeat)
    series = selectors.trade_series(selectors.trades_in(TradeFilters(), using=ALIAS), ALIAS)
    prepared = services.prepare_report(request, now, ALIAS)
    inputs = PerformanceInputs(prepared.start_equity, prepared.bounds_us)
    samples = _samples(lambda: performance(series, inputs), 5 if quick else 30)
    metrics_s = statistics.median(samples)
    rows.append(_row("metrics alone (in-memory arrays)", size,
                     f"{metrics_s * 1e3:.1f} ms median (best {min(samples) * 1e3:.1f} ms)",
                     "≤ 25 ms", metrics_s <= 0.025))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantstats = _quantstats_equivalents(series, prepared.start_equity)
        quantstats_s = _median_seconds(quantstats, 3 if quick or size >= 1_000_000 else 5)
    ratio = quantstats_s / metrics_s
    rows.append(_row("quantstats, equivalent metrics, same arrays", size,
                     f"{quantstats_s * 1e3:.0f} ms: ours {ratio:.1f}× faster",
                     "ours ≥ 7× faster", ratio >= 7))

    report_s = _median_seconds(lambda: services.performance_report(request, now=now, using=ALIAS),
                               repeat)
    rows.append(_row("full report end to end (DB fetch + metrics)", size,
                     f"{report_s * 1e3:.0f} ms (fetch {fetch_s * 1e3:.0f} ms)", "≤ 1 s",
                     report_s <= 1.0))

    if size == max(QUICK_SIZES if quick else SIZES):
        for period in (Period.TODAY, Period.WEEK, Period.MONTH):
            period_request = services.ReportRequest(period=period)
            start = time.perf_counter()
            first = services.performance_report(period_request, now=now, using=ALIAS)
            cold_s = time.perf_counter() - start
            warm_s = _median_seconds(lambda r=period_request: services.performance_report(
                r, now=now, using=ALIAS), 10)
            rows.append(_row(
                f"{period} report on the {size:,}-trade history", size,
                f"{warm_s * 1e3:.0f} ms ({first['trade_count']:,} trades; first call "
                f"{cold_s * 1e3:.0f} ms sums the earlier history once)",
                "≤ 50 ms", warm_s <= 0.05))
    print(f"  {size:,} trades done ({timezone.get_default_timezone()})", flush=True)
    return rows


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows; ``quick`` runs the 10k size only (a smoke test)."""
    _setup_django()
    _ensure_database()
    from django.utils import timezone

    now = timezone.now().replace(microsecond=0) - timedelta(seconds=1)
    rows: list[dict] = []
    for size in QUICK_SIZES if quick else SIZES:
        rows.extend(_bench_size(size, now, quick))
    return rows


def print_table(rows: list[dict]) -> None:
    cells = [["workload", "size", "figure", "target", "met"]] + [
        [r["workload"], f"{r['size']:,}" if isinstance(r["size"], int) else str(r["size"]),
         r["figure"], r["target"], "yes" if r["met"] else "NO"] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(5)]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    print_table(run(quick="--quick" in sys.argv[1:]))
