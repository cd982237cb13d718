"""Benchmark: the order pipeline's throughput and its overhead over raw ccxt calls.

1. Orders per second through the full pipeline (``order_submit`` → slippage
   estimate → claimed placement → fill → final state) against the zero-latency
   paper exchange on PostgreSQL, by one worker and by several worker processes
   (like Celery's prefork pool): bare orders, and entry orders whose fill opens a
   supervised position.
2. The pipeline's overhead over raw ccxt: the same market order placed by real
   ``ccxt.bybit`` against the local Bybit v5 emulator, once with the exact calls
   the pipeline makes (order book, create, fetch) issued directly, once through the
   pipeline; blocks are interleaved and the ratio of total times reported.

Runs on its own PostgreSQL database (``BENCH_EXECUTION_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_execution``; created and
migrated when missing, its order and position tables emptied before each run).
Under a runner already set up on another database it re-runs itself in a child
process pointed at that database.

    .venv/bin/python -m bench.bench_execution [--quick]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from decimal import Decimal
from typing import Any
from urllib.parse import urlparse

from bench.database import create_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_execution"
TARGET_ORDERS_PER_SECOND = 200
TARGET_OVERHEAD = 1.2
SYMBOL = "BTC/USDT:USDT"


def _bench_url() -> str:
    return os.environ.get("BENCH_EXECUTION_DATABASE_URL", DEFAULT_URL)




def _on_bench_database() -> bool:
    from django.db import connection

    return (connection.vendor == "postgresql"
            and connection.settings_dict["NAME"] == urlparse(_bench_url()).path.lstrip("/"))


def _setup_django() -> bool:
    """Configure Django for the bench database; False when another runner owns the process."""
    from django.conf import settings

    if not settings.configured:
        os.environ["DATABASE_URL"] = _bench_url()
        os.environ.pop("REDIS_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        create_database(_bench_url())
    import django

    django.setup()
    if not _on_bench_database():
        return False
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return True


def _run_in_child(quick: bool) -> list[dict]:
    env = {**os.environ, "DATABASE_URL": _bench_url(), "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run([sys.executable, "-m", "bench.bench_execution", "--json",
                             *(["--quick"] if quick else [])], env=env, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE execution_order, execution_action, lifecycle_positionfill, "
                       "lifecycle_positionevent, lifecycle_trade, lifecycle_position, "
                       "risk_riskalert, risk_healthsnapshot CASCADE")


def _paper_account(name: str):
    from execution.models import ExchangeAccount

    account, _ = ExchangeAccount.objects.update_or_create(name=name, defaults={
        "exchange_id": ExchangeAccount.PAPER, "starting_capital": Decimal("1000000000"),
        "paper_config": {"feed": {"type": "manual", "prices": {SYMBOL: "50000"}},
                         "book": {"levelNotional": 100000000},
                         "markets": {SYMBOL: {"amountStep": "0.001", "priceStep": "0.1"}}}})
    return account


def _place_orders(account_id: int, strategy_id: int | None, first: int, count: int) -> None:
    """One worker's share: ``count`` market orders through the whole pipeline, in turn."""
    from execution.exchanges.paper import paper_exchange_for
    from execution.models import ExchangeAccount
    from execution.services import order_place, run_inline
    from lifecycle.models import Strategy

    account = ExchangeAccount.objects.get(pk=account_id)
    strategy = Strategy.objects.get(pk=strategy_id) if strategy_id else None
    drive = run_inline(exchange=paper_exchange_for(account), sleep=time.sleep)
    for i in range(first, first + count):
        order_place(drive=drive, account=account, strategy=strategy, symbol=SYMBOL,
                    side="buy" if i % 2 == 0 else "sell", quantity=Decimal("0.01"))


def _worker_process(account_id: int, strategy_id: int | None, first: int, count: int,
                    start: Any, failures: Any) -> None:
    from django.db import connection

    try:
        start.wait()
        _place_orders(account_id, strategy_id, first, count)
    except BaseException:
        failures.put(traceback.format_exc())
        raise
    finally:
        connection.close()


def bench_paper_throughput(count: int, *, with_positions: bool, workers: int = 1) -> float:
    """Orders per second through the full pipeline on the paper exchange.

    One worker runs in this process. Several run as forked processes, like Celery's
    prefork workers: each has its own database connection and its own (zero-latency)
    paper exchange, and they share the orders between them.
    """
    from django.db import connections

    from execution.exchanges.paper import reset_paper_exchanges
    from execution.models import Order, OrderStatus
    from lifecycle.models import Strategy

    reset_paper_exchanges()
    _reset_tables()
    account = _paper_account("bench-paper")
    strategy_id = None
    if with_positions:
        strategy_id = Strategy.objects.get_or_create(name="bench-paper", defaults={
            "account": account})[0].pk
    if workers == 1:
        started = time.perf_counter()
        _place_orders(account.pk, strategy_id, 0, count)
        elapsed = time.perf_counter() - started
    else:
        context = multiprocessing.get_context("fork")
        start, failures = context.Barrier(workers + 1), context.Queue()
        shares = [count // workers + (1 if w < count % workers else 0) for w in range(workers)]
        connections.close_all()  # a forked child must open its own connection
        processes = [context.Process(target=_worker_process, args=(
            account.pk, strategy_id, sum(shares[:w]), share, start, failures))
            for w, share in enumerate(shares)]
        for process in processes:
            process.start()
        start.wait()
        started = time.perf_counter()
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - started
        if any(process.exitcode for process in processes):
            raise RuntimeError("a worker process failed:\n" + failures.get(timeout=5))
    filled = Order.objects.filter(status=OrderStatus.FILLED).count()
    if filled != count:
        raise RuntimeError(f"{filled} of {count} orders filled")
    if with_positions:
        opened = Order.objects.filter(status=OrderStatus.FILLED, position__isnull=False).count()
        if opened != count:
            raise RuntimeError(f"{opened} of {count} entry fills opened a position")
    return count / elapsed


def bench_ccxt_overhead(count: int, *, latency_ms: float = 0.0, block: int = 25
                        ) -> tuple[float, float, float, float]:
    """(pipeline, raw ccxt, database ms/order, ratio) against the local Bybit emulator.

    ``latency_ms`` delays every emulator answer like a network round trip. The
    database figure is the time the pipeline's statements take, seen from the client.
    """
    from django.db import connection

    from execution.exchanges.ccxt_exchange import CcxtExchange, CcxtSettings, build_client
    from execution.models import ExchangeAccount, Order, OrderStatus
    from execution.services import order_place, run_inline
    from execution.tests.bybit_emulator import BybitEmulator

    _reset_tables()
    with BybitEmulator(record_requests=False, latency_ms=latency_ms) as emulator:
        settings = CcxtSettings(account_id=None, exchange_id="bybit",
                                api_base_url=emulator.base_url,
                                credentials={"apiKey": emulator.api_key,
                                             "secret": emulator.api_secret},
                                timeout_ms=5000, enable_rate_limit=False)
        exchange = CcxtExchange(settings, client=build_client(settings))
        raw = build_client(settings)
        raw.load_markets()
        exchange.market_rules(SYMBOL)
        account, _ = ExchangeAccount.objects.update_or_create(
            name="bench-bybit-emulator",
            defaults={"exchange_id": "bybit", "api_base_url": emulator.base_url})
        drive = run_inline(exchange=exchange, sleep=time.sleep)
        pipeline_seconds = raw_seconds = 0.0
        database_seconds = [0.0]

        def database_time(execute: Any, *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute(*args)
            finally:
                database_seconds[0] += time.perf_counter() - started

        done = 0
        while done < count:
            n = min(block, count - done)
            started = time.perf_counter()
            for i in range(n):
                raw.fetch_order_book(SYMBOL, 25)
                placed = raw.create_order(SYMBOL, "market", "buy", 0.01, None,
                                          {"clientOrderId": f"raw-{done + i}"})
                raw.fetch_order(placed["id"], SYMBOL, {"acknowledged": True})
            raw_seconds += time.perf_counter() - started
            started = time.perf_counter()
            with connection.execute_wrapper(database_time):
                for _ in range(n):
                    order_place(drive=drive, account=account, symbol=SYMBOL, side="buy",
                                quantity=Decimal("0.01"))
            pipeline_seconds += time.perf_counter() - started
            done += n
        filled = Order.objects.filter(account=account, status=OrderStatus.FILLED).count()
        if filled != count:
            raise RuntimeError(f"{filled} of {count} pipeline orders filled")
    per_pipeline, per_raw = pipeline_seconds / count * 1000, raw_seconds / count * 1000
    return per_pipeline, per_raw, database_seconds[0] / count * 1000, pipeline_seconds / raw_seconds


def run(quick: bool = False) -> list[dict]:
    if not _setup_django():
        return _run_in_child(quick)
    count = 400 if quick else 2000
    rows = []
    for with_positions, workers in ((False, 1), (False, 2), (False, 4), (True, 1), (True, 2)):
        rate = bench_paper_throughput(count, with_positions=with_positions, workers=workers)
        kind = "entry orders opening positions" if with_positions else "market orders"
        rows.append({"workload": f"execution: {kind}, paper, PostgreSQL, "
                                 f"{'1 worker' if workers == 1 else f'{workers} worker processes'}",
                     "size": count, "figure": f"{rate:.0f} orders/s",
                     "target": f">= {TARGET_ORDERS_PER_SECOND} orders/s",
                     "met": rate >= TARGET_ORDERS_PER_SECOND})
    # The local emulator answers in ~1 ms; a real exchange call takes tens of ms.
    for latency, size in ((0.0, 100 if quick else 400), (50.0, 20 if quick else 60)):
        per_pipeline, per_raw, per_database, ratio = bench_ccxt_overhead(size, latency_ms=latency)
        rows.append({"workload": f"execution: pipeline / raw ccxt, Bybit emulator "
                                 f"+{latency:g} ms per call", "size": size,
                     "figure": f"{ratio:.2f}x ({per_pipeline:.2f} vs {per_raw:.2f} ms/order; "
                               f"database {per_database:.2f} ms/order)",
                     "target": f"<= {TARGET_OVERHEAD}x", "met": ratio <= TARGET_OVERHEAD})
    return rows


def main(argv: list[str]) -> int:
    rows = run(quick="--quick" in argv)
    if "--json" in argv:
        print(json.dumps(rows))
        return 0
    width = max(len(r["workload"]) for r in rows)
    for row in rows:
        print(f"{row['workload']:<{width}}  {row['size']!s:>6}  {row['figure']:<36}  "
              f"{row['target']:<18}  {'met' if row['met'] else 'NOT MET'}")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
