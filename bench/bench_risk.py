"""Benchmark: health scoring of 10,000 positions, and the full ``check_risk`` tick on PostgreSQL.

* scoring — ``risk.scoring.score_positions`` (market features of every symbol, the five
  components, the weighted score and the level) in one vectorised call, next to a naive
  per-position Python loop of the same formulas (checked to give the same scores);
* the tick — ``risk.services.run_risk_check`` over 10,000 held positions on 100 symbols:
  two queries of positions and candles, scoring, bulk snapshot insert, one UPDATE of the
  positions, alert sync, emergency closes and the live push (in-memory layer).

Runs on its own PostgreSQL database (``BENCH_RISK_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_risk``; created and migrated when
missing, its tables emptied before each run). When a runner has already configured
Django on another database, the tick runs in a subprocess on the bench database.

    .venv/bin/python -m bench.bench_risk [--quick] [--json]
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

import numpy as np

from bench.database import django_on_bench_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_risk"
SCORING_TARGET_MS = 10.0
TICK_TARGET_S = 2.0
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SYMBOLS = 100
CANDLES = 110           # the default windows need 97; a few more as the feed would keep
TIMEFRAME_S = 300.0


# --- market and positions (shared by both benchmarks) -----------------------------------

def _market(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Random-walk closes and log-normal volumes, (SYMBOLS, CANDLES), latest last."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.5, 60000, size=(SYMBOLS, 1))
    vol = rng.uniform(0.001, 0.004, size=(SYMBOLS, 1))
    closes = start * np.exp(np.cumsum(rng.normal(0, 1, (SYMBOLS, CANDLES)) * vol, axis=1))
    volumes = rng.lognormal(7, 0.6, (SYMBOLS, CANDLES))
    volumes[: SYMBOLS // 10, -3:] *= 0.2  # a tenth of the symbols are thin right now
    return np.round(closes, 6), np.round(volumes, 4)


def _positions(size: int, closes: np.ndarray, seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    symbol = np.arange(size) % SYMBOLS
    candles_ago = rng.integers(1, 40, size)      # opened 5–200 minutes ago
    entry = closes[symbol, CANDLES - 1 - candles_ago]
    return {"symbol": symbol, "side": np.where(rng.random(size) < 0.5, 1.0, -1.0),
            "entry": entry, "minutes": candles_ago * 5.0}


# --- scoring: vectorised vs naive ----------------------------------------------------

def _scoring_inputs(size: int):
    from risk import scoring

    closes, volumes = _market()
    p = _positions(size, closes)
    width = scoring.MarketWindows.of([(3, 20, 12, 96)]).width()
    windows = scoring.MarketWindows.of([(3, 20, 12, 96)] * SYMBOLS)
    market = scoring.MarketMatrix(closes[:, -width:], volumes[:, -width:], windows,
                                  np.zeros(SYMBOLS))
    price = closes[p["symbol"], -1]
    since = (p["minutes"] / 5).astype(np.int64)
    highest, lowest = scoring.price_extremes(market, p["symbol"], since)
    positions = scoring.PositionArrays(
        side=p["side"], entry_price=p["entry"], peak_price=np.fmax(p["entry"], highest),
        trough_price=np.fmin(p["entry"], lowest), price=price, minutes_open=p["minutes"],
        max_holding_minutes=np.full(size, 240.0), market_row=p["symbol"])
    return market, positions, scoring.ScoringParams()


def naive_score(i: int, market, positions, params) -> float:
    """One position, the straightforward way: plain Python over its symbol's candle lists."""
    row = int(positions.market_row[i])
    closes = market.closes[row].tolist()
    volumes = market.volumes[row].tolist()
    side, entry = positions.side[i], positions.entry_price[i]
    price = positions.price[i]
    clip = lambda x: min(1.0, max(0.0, x)) * 100  # noqa: E731
    time_score = clip(1 - positions.minutes_open[i] / positions.max_holding_minutes[i])
    if side > 0:
        best = max(positions.peak_price[i], price)
        adverse = (best - price) / best * 100
    else:
        best = min(positions.trough_price[i], price)
        adverse = (price - best) / best * 100
    drawdown = clip(1 - adverse / params.drawdown_limit_percent)
    recent = statistics.fmean(volumes[-3:])
    baseline = statistics.fmean(volumes[-23:-3])
    volume = clip(recent / baseline)
    returns = [closes[k] / closes[k - 1] - 1 for k in range(1, len(closes))]
    ratio = statistics.pstdev(returns[-12:]) / statistics.pstdev(returns[-96:])
    spike = params.volatility_spike_ratio
    volatility = clip((spike - ratio) / (spike - 1))
    pnl = side * (price / entry - 1) * 100 - 2 * params.fee_rate_percent
    profitability = clip((pnl + params.loss_limit_percent)
                         / (params.loss_limit_percent + params.profit_target_percent))
    w = params.weights
    return round(w[0] * time_score + w[1] * drawdown + w[2] * volume + w[3] * volatility
                 + w[4] * profitability, 2)


def bench_scoring(size: int, repeats: int) -> list[dict]:
    from risk import scoring

    market, positions, params = _scoring_inputs(size)
    scoring.score_positions(positions, market, params)  # warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = scoring.score_positions(positions, market, params)
        timings.append(time.perf_counter() - started)
    vectorised_ms = statistics.median(timings) * 1000
    started = time.perf_counter()
    naive = [naive_score(i, market, positions, params) for i in range(size)]
    naive_ms = (time.perf_counter() - started) * 1000
    worst_gap = float(np.max(np.abs(np.asarray(naive) - result.score)))
    return [
        {"workload": f"risk scoring, vectorised (one call, median of {repeats})", "size": size,
         "figure": f"{vectorised_ms:.2f} ms", "target": f"≤ {SCORING_TARGET_MS:g} ms",
         "met": vectorised_ms <= SCORING_TARGET_MS},
        {"workload": "risk scoring, naive per-position Python loop", "size": size,
         "figure": f"{naive_ms:.0f} ms = {naive_ms / vectorised_ms:.0f}× the vectorised call; "
                   f"scores differ by ≤ {worst_gap:.2f}",
         "target": "same scores (reference)", "met": worst_gap <= 0.011},
    ]


# --- the full tick on PostgreSQL --------------------------------------------------------





def _bench_url() -> str:
    return os.environ.get("BENCH_RISK_DATABASE_URL", DEFAULT_URL)




def _reset(size: int) -> None:
    """Empty the tables and bulk-create the market and ``size`` held positions."""
    from django.core.management import call_command
    from django.db import connection

    from execution.models import Action, Candle, ExchangeAccount
    from lifecycle.models import Position, PositionEvent, PositionFill, Strategy, Trade
    from risk.models import HealthSnapshot, RiskAlert, StrategyRiskCheck

    call_command("migrate", verbosity=0, interactive=False)
    models = (HealthSnapshot, RiskAlert, StrategyRiskCheck, Action, PositionEvent, PositionFill,
              Trade, Position, Candle)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(m._meta.db_table for m in models)} "
                       "RESTART IDENTITY CASCADE")
    account, _ = ExchangeAccount.objects.get_or_create(name="bench-risk",
                                                       defaults={"exchange_id": "paper"})
    strategies = [Strategy.objects.get_or_create(name=f"bench-risk-{k}", account=account,
                                                 defaults={"timeframe": "5m"})[0]
                  for k in range(4)]
    closes, volumes = _market()
    first_open = NOW - timedelta(seconds=TIMEFRAME_S * CANDLES)
    Candle.objects.bulk_create([
        Candle(exchange_id="paper", symbol=f"SYM{s}/USDT:USDT", timeframe="5m",
               open_time=first_open + timedelta(seconds=TIMEFRAME_S * c),
               open=Decimal(str(closes[s, c])), high=Decimal(str(closes[s, c])),
               low=Decimal(str(closes[s, c])), close=Decimal(str(closes[s, c])),
               volume=Decimal(str(volumes[s, c])))
        for s in range(SYMBOLS) for c in range(CANDLES)], batch_size=5000)
    p = _positions(size, closes)
    rows = []
    for i in range(size):
        entry = Decimal(str(p["entry"][i]))
        opened = NOW - timedelta(minutes=float(p["minutes"][i]))
        rows.append(Position(
            strategy=strategies[i % 4], symbol=f"SYM{p['symbol'][i]}/USDT:USDT",
            side="long" if p["side"][i] > 0 else "short", quantity=Decimal("0.5"),
            initial_quantity=Decimal("0.5"), entry_price=entry, opened_at=opened,
            state_changed_at=opened, peak_price=entry, trough_price=entry, last_price=entry,
            last_price_at=opened))
    Position.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(m._meta.db_table for m in models)}")


def _timed_tick(at: datetime):
    import time_machine
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from risk.services import risk_check_run

    with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = risk_check_run(force=True)
        elapsed = time.perf_counter() - started
    return elapsed, len(queries), result


def bench_tick(size: int) -> list[dict]:
    from django.db import connection

    _reset(size)
    rows = []
    for label, at in (("first: snapshots, alerts raised, emergency closes", NOW),
                      ("steady state: alerts refreshed", NOW + timedelta(minutes=1))):
        elapsed, queries, result = _timed_tick(at)
        levels = ", ".join(f"{k} {v}" for k, v in result.levels.items())
        rows.append({
            "workload": f"check_risk tick, {label} [{connection.vendor}]", "size": size,
            "figure": f"{elapsed:.3f} s ({result.duration_ms / 1000:.3f} s before commit, the "
                      f"rest commit + after-commit pushes), {queries} queries; {levels}; "
                      f"{result.alerts_raised} alerts raised, "
                      f"{len(result.closes_requested)} emergency closes",
            "target": f"≤ {TICK_TARGET_S:g} s",
            "met": elapsed <= TICK_TARGET_S and result.positions == size})
    return rows


def _tick_in_subprocess(quick: bool) -> list[dict]:
    command = [sys.executable, "-m", "bench.bench_risk", "--json", "--tick-only"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    out = subprocess.run(command + (["--quick"] if quick else []), check=True,
                         capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout)


def run(quick: bool = False, *, tick_only: bool = False) -> list[dict]:
    size = 1000 if quick else 10_000
    rows = [] if tick_only else bench_scoring(size, repeats=5 if quick else 30)
    if django_on_bench_database(_bench_url()):
        rows += bench_tick(size)
    else:
        rows += _tick_in_subprocess(quick)
    return rows


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv, tick_only="--tick-only" in argv)
    if "--json" in argv:
        print(json.dumps(rows))
        return
    from bench.__main__ import render

    print(render(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
