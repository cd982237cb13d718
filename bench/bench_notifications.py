"""Benchmark: how fast an alert reaches a channel, and what the outbox costs the risk tick.

* latency — ``alert_raise`` commits (its notification in the same transaction), the
  commit starts a delivery pass on an in-process Celery worker (4 threads, the
  embedded default's in-memory broker), the pass renders, routes and sends through
  real Apprise to a local HTTP sink that answers in 50 ms; measured from the commit to
  the sink receiving the message. 100 alerts on 100 positions, 10 per second (quick: 20),
  the channel's rate limit raised so that every message is sent on its own;
* risk tick — ``risk_check_run`` over 6,000 held positions, whose first tick raises about
  1,000 alerts, with and without the notifications receiver connected (median of 3 each,
  every run from the same state): the difference is what writing the outbox adds.

Runs on its own PostgreSQL database (``BENCH_NOTIFICATIONS_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/trading_bench_notifications``; created and migrated
when missing). When a runner has already configured Django on another database, it runs
in a subprocess on the bench database.

    .venv/bin/python -m bench.bench_notifications [--quick] [--json]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time

from bench.database import django_on_bench_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/trading_bench_notifications"
LATENCY_TARGET_S = 2.0
TICK_TARGET_MS = 100.0
SINK_ANSWERS_S = 0.05


def _bench_url() -> str:
    return os.environ.get("BENCH_NOTIFICATIONS_DATABASE_URL", DEFAULT_URL)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_latency(sink, count: int) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from notifications.models import Notification
    from operations.runtime import CeleryWorker
    from risk.models import RiskAlert
    from risk.services import alert_raise
    from tradingsite.celery import app
    from tradingsite.testing.factories import PositionFactory, StrategyFactory

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_notification, notifications_delivery, "
                       "notifications_deliveryattempt, risk_riskalert RESTART IDENTITY CASCADE")
    strategy = StrategyFactory(name="bench-notify")
    positions = [PositionFactory(strategy=strategy, symbol=f"N{i}/USDT:USDT")
                 for i in range(count)]
    worker = CeleryWorker(app, threads=4, private_queue=f"bench-notify.{os.getpid()}")
    worker.start()
    raised: dict[str, float] = {}
    try:
        for i, position in enumerate(positions):
            text = f"bench alert {i}"
            alert_raise(position=position, kind="danger_critical", severity="CRITICAL",
                        message=text)
            raised[text] = time.perf_counter()  # committed: the outbox row is durable
            time.sleep(0.1)
        deadline = time.monotonic() + 60
        while len(sink.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop(10)
    latencies, seen = [], set()
    with sink.lock:
        arrivals = list(zip(sink.received, sink.arrivals, strict=True))
    for message, arrived in arrivals:
        text = message["message"].split("\n", 1)[0]
        if text in raised and text not in seen:
            seen.add(text)
            latencies.append(arrived - raised[text])
    delivered, duplicates = len(latencies), len(arrivals) - len(latencies)
    p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
    return {
        "workload": "alert raised → message at a sink answering in 50 ms (Apprise json://, "
                    "in-process worker, memory broker)",
        "size": f"{count} alerts, 10/s",
        "figure": f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max "
                  f"{max(latencies) * 1000:.0f} ms; {delivered}/{count} delivered, "
                  f"{duplicates} twice ({Notification.objects.count()} rows, "
                  f"{RiskAlert.objects.count()} alerts)",
        "target": f"p95 ≤ {LATENCY_TARGET_S:g} s",
        "met": delivered == count and not duplicates and p95 <= LATENCY_TARGET_S}


def _tick_once(size: int, connected: bool) -> tuple[float, float, int]:
    """One tick from the same state: (wall s, s spent in the outbox's receiver and its
    after-commit hand-over, alerts raised)."""
    import time_machine
    from django.db import connection

    from bench.bench_risk import NOW
    from notifications import receivers, services
    from risk.services import risk_check_run
    from risk.signals import alerts_raised

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE risk_healthsnapshot, risk_riskalert, execution_action, "
                       "notifications_notification, notifications_delivery, "
                       "notifications_deliveryattempt RESTART IDENTITY CASCADE")
    spent = [0.0]

    def timed(function):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started
        return run

    alerts_raised.disconnect(dispatch_uid="notifications.alerts_raised")
    if connected:
        alerts_raised.connect(timed(receivers.alerts_raised), weak=False,
                              dispatch_uid="notifications.alerts_raised")
    real_hand_over = services.deliver_soon
    services.deliver_soon = timed(real_hand_over)
    try:
        with time_machine.travel(NOW, tick=False):
            started = time.perf_counter()
            result = risk_check_run(force=True)
            elapsed = time.perf_counter() - started
    finally:
        services.deliver_soon = real_hand_over
        alerts_raised.disconnect(dispatch_uid="notifications.alerts_raised")
        alerts_raised.connect(receivers.alerts_raised,
                              dispatch_uid="notifications.alerts_raised")
    assert result.positions == size
    return elapsed, spent[0], result.alerts_raised


def bench_tick(size: int, repeats: int) -> dict:
    """The outbox's cost inside the tick, measured where it is spent (the receiver and the
    after-commit hand-over); the tick's wall time with and without it for context (on a
    shared machine the wall time moves by more than the cost itself)."""
    from bench.bench_risk import _reset
    from notifications.models import Notification

    _reset(size)
    _tick_once(size, connected=True)  # warm-up: caches, plans
    inside, with_outbox, without, alerts, written = [], [], [], 0, 0
    for _ in range(repeats):
        elapsed, spent, alerts = _tick_once(size, connected=True)
        with_outbox.append(elapsed)
        inside.append(spent)
        written = Notification.objects.exclude(kind="close_requested").count()
        without.append(_tick_once(size, connected=False)[0])
    cost_ms = statistics.median(inside) * 1000
    per_thousand = cost_ms * 1000 / max(alerts, 1)
    return {
        "workload": "risk tick raising alerts: what writing their notifications adds "
                    "[postgresql]",
        "size": f"{size} positions, {alerts} alerts",
        "figure": f"{cost_ms:.0f} ms in the outbox ({per_thousand:.0f} ms per 1,000 alerts; "
                  f"median of {repeats}); tick {statistics.median(with_outbox):.3f} s with it, "
                  f"{statistics.median(without):.3f} s without; {written} notifications "
                  "written in one COPY",
        "target": f"≤ {TICK_TARGET_MS:g} ms per 1,000 alerts",
        "met": written == alerts and per_thousand <= TICK_TARGET_MS}


def _in_subprocess(quick: bool) -> list[dict]:
    command = [sys.executable, "-m", "bench.bench_notifications", "--json"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "NOTIFY_URLS")}
    out = subprocess.run(command + (["--quick"] if quick else []), check=True,
                         capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout)


def run(quick: bool = False) -> list[dict]:
    from tradingsite.testing.sink import Sink

    sink = Sink()
    sink.answer_after = SINK_ANSWERS_S
    os.environ["NOTIFY_URLS"] = f"rate=10000/60:{sink.url}"
    os.environ.setdefault("WATCHDOG_EMBEDDED", "0")
    if not django_on_bench_database(_bench_url()):
        return _in_subprocess(quick)
    from django.conf import settings

    settings.NOTIFY_URLS = os.environ["NOTIFY_URLS"]
    sink.start()
    try:
        rows = [bench_latency(sink, 20 if quick else 100)]
    finally:
        sink.stop()
    rows.append(bench_tick(1200 if quick else 6000, repeats=1 if quick else 3))
    return rows


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    if "--json" in argv:
        print(json.dumps(rows))
        return
    from bench.__main__ import render

    print(render(rows))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main(sys.argv[1:])
