"""Benchmark: ``manage.py import_trades`` of a generated 1,000,000-row CSV, as an operator runs it.

The command runs in its own process on its own PostgreSQL database
(``BENCH_IMPORT_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_import``; created and migrated when
missing, its trades emptied before each run), so the figures are the wall time and the
peak resident memory of that process (``wait4``), start-up included. The CSV (fixed
seed, four strategies, every row with an ``external_ref``, PnL computed by the importer)
is written once under ``var/bench/`` and reused.

    .venv/bin/python -m bench.bench_import [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.database import create_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_import"
ROOT = Path(__file__).resolve().parent.parent
SIZE, QUICK_SIZE = 1_000_000, 100_000
TARGET_SECONDS, TARGET_MB = 60.0, 200.0
SEED = 20_261_206
STRATEGIES = ("bench-import-a", "bench-import-b", "bench-import-c", "bench-import-d")
SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT")
HEADER = ("strategy,symbol,side,quantity,entry_price,exit_price,opened_at,closed_at,fees,"
          "exit_reason,external_ref\n")
START = datetime(2024, 1, 1, tzinfo=UTC)
# Emptied with SQL: the ORM would load a million trades to send their delete signals.
SETUP = """
from django.db import connection
from execution.models import ExchangeAccount
with connection.cursor() as cursor:
    cursor.execute("TRUNCATE lifecycle_trade, analytics_realisedpnlcheckpoint")
ExchangeAccount.objects.get_or_create(name="bench-import-paper", defaults={"exchange_id": "paper"})
"""


def _url() -> str:
    return os.environ.get("BENCH_IMPORT_DATABASE_URL", DEFAULT_URL)


def generate_csv(path: Path, rows: int) -> Path:
    """``rows`` closed trades spread over two years, in close order (written once)."""
    if path.exists() and path.stat().st_size > 0:
        return path
    rng = np.random.default_rng(SEED + rows)
    opened = np.sort(rng.integers(0, 2 * 365 * 86400, rows))
    held = rng.integers(60, 4 * 3600, rows)
    entry = np.round(rng.uniform(0.5, 60000, rows), 4)
    exit_ = np.round(entry * (1 + rng.normal(0, 0.01, rows)), 4)
    quantity = np.round(rng.uniform(0.001, 5, rows), 6)
    fees = np.round(entry * quantity * 0.0011, 6)
    strategy, symbol = rng.integers(0, 4, rows), rng.integers(0, 4, rows)
    side, reason = rng.integers(0, 2, rows), rng.integers(0, 5, rows)
    reasons = ("signal", "timeout", "risk", "manual", "shutdown")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            o = START + timedelta(seconds=int(opened[i]))
            c = o + timedelta(seconds=int(held[i]))
            out.write(f"{STRATEGIES[strategy[i]]},{SYMBOLS[symbol[i]]},"
                      f"{'long' if side[i] else 'short'},{quantity[i]},{entry[i]},{exit_[i]},"
                      f"{o:%Y-%m-%dT%H:%M:%SZ},{c:%Y-%m-%dT%H:%M:%SZ},{fees[i]},"
                      f"{reasons[reason[i]]},bench-{i}\n")
    tmp.replace(path)
    return path


def _environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="tradingsite.settings",
               LIVE_TRADING_FILE="/nonexistent/bench-live-trading.json")
    return env


def import_once(csv: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, last output line) of one ``import_trades`` process.

    The CPU time is the import process's own (the database server's is not in it): with
    other work on the machine, the wall time grows and this does not.
    """
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "manage.py", "import_trades", str(csv)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"import_trades failed ({proc.returncode}):\n{output[-2000:]}")
    return (elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            output.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    url = _url()
    create_database(url)
    env = _environment(url)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    size = QUICK_SIZE if quick else SIZE
    csv = generate_csv(ROOT / "var" / "bench" / f"import-trades-{size}.csv", size)
    subprocess.run([*manage, "shell", "-c", SETUP], cwd=ROOT, env=env, check=True)
    rows = []
    for workload in ("import_trades of a generated CSV (one process: parse, stage, publish)",
                     "import_trades of the same CSV again (every row skipped as a duplicate)"):
        load = os.getloadavg()[0]
        seconds, cpu, peak_mb, last = import_once(csv, env)
        rows.append({"workload": workload, "size": size,
                     "figure": f"{seconds:.1f} s wall, {cpu:.1f} s CPU of the import process, "
                               f"peak {peak_mb:.0f} MB; load {load:.1f} on {os.cpu_count()} "
                               f"cores ({last})",
                     "target": f"≤ {TARGET_SECONDS:.0f} s, ≤ {TARGET_MB:.0f} MB",
                     "met": seconds <= TARGET_SECONDS and peak_mb <= TARGET_MB})
    return rows


if __name__ == "__main__":
    from bench.__main__ import render

    print(render(run(quick="--quick" in sys.argv[1:])))
