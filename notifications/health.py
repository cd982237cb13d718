"""``/healthz``: is the platform able to supervise positions right now, part by part.

Each component is a probe (``settings.HEALTH_PROBES``: name → dotted path of
``def probe(timeout: float) -> Probe``), run on its own thread and abandoned when it
overruns ``liveTrading.watchdog.probeTimeoutSeconds``, so a hung database or broker makes
the answer slow by at most that much, never hang. Results are shared for a second
between concurrent requests: the endpoint needs no login and must stay cheap.

Nothing about trading is in the answer (no positions, orders, accounts or hosts):
statuses, ages and counts only. A failure's detail is its error type; the full
message goes to the log, masked.

Adding a component: write a probe that returns ``Probe(status, {"age_seconds": …})`` and
add it to ``HEALTH_PROBES``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone
from django.utils.module_loading import import_string

from tradingsite.env import mask_url
from tradingsite.live_config import LiveConfigError, WatchdogConfig, site_config

log = logging.getLogger(__name__)

OK, FAILING, NONE_CONFIGURED = "ok", "failing", "none configured"
CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Probe:
    status: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failing(self) -> bool:
        return self.status == FAILING

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, **self.details}


def watchdog_config() -> WatchdogConfig:
    try:
        return site_config().watchdog
    except LiveConfigError:  # start-up refuses it; edited since: health still answers
        return WatchdogConfig()


def _failure(exc: BaseException, component: str) -> Probe:
    log.warning("health: %s failing: %s", component, mask_url(f"{type(exc).__name__}: {exc}"))
    return Probe(FAILING, {"error": type(exc).__name__})


# --- the probes ------------------------------------------------------------------------------

def database_probe(timeout: float) -> Probe:
    """One round trip (PostgreSQL: bounded by a statement timeout as well)."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET statement_timeout = %s", [int(timeout * 1000)])
            cursor.execute("SELECT 1")
            cursor.fetchone()
            if connection.vendor == "postgresql":
                cursor.execute("SET statement_timeout = 0")
    except Exception as exc:
        return _failure(exc, "database")
    return Probe(OK, {"latency_ms": round((time.perf_counter() - started) * 1000, 1)})


def broker_probe(timeout: float) -> Probe:
    """Redis answers a PING; the in-memory broker lives in this process."""
    if not settings.REDIS_URL:
        return Probe(OK, {"kind": "in-memory (this process only)"})
    import redis

    started = time.perf_counter()
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return _failure(exc, "broker")
    return Probe(OK, {"kind": "redis",
                      "latency_ms": round((time.perf_counter() - started) * 1000, 1)})


def beat_probe(timeout: float) -> Probe:
    """Beat's last send of each enabled periodic task (``last_run_at``, written on send).

    Failing when beat sent nothing for ``beatSilenceSeconds`` or a task is that much
    past its interval. ``silent_seconds``: since beat last sent any task.
    """
    from django_celery_beat.models import PeriodicTask

    grace = watchdog_config().beat_silence_seconds
    now = timezone.now()
    try:
        rows = list(PeriodicTask.objects.filter(enabled=True, interval__isnull=False)
                    .exclude(name__startswith="celery.")
                    .select_related("interval").order_by("name"))
    except Exception as exc:
        return _failure(exc, "beat")
    tasks: dict[str, dict[str, Any]] = {}
    late = []
    last_any: datetime | None = None
    for task in rows:
        every = task.interval.schedule.run_every.total_seconds()
        age = (now - task.last_run_at).total_seconds() if task.last_run_at else None
        # Never sent yet: beat counts from the row's last change (as its scheduler does), so a
        # new hourly task is not late in its first hour, and any task is once beat is gone.
        since = task.last_run_at or task.date_changed
        status = OK if since and (now - since).total_seconds() <= every + grace else "late"
        if status != OK:
            late.append(task.name)
        tasks[task.name] = {"every_seconds": every,
                            "age_seconds": None if age is None else round(age, 1),
                            "status": status}
        if task.last_run_at and (last_any is None or task.last_run_at > last_any):
            last_any = task.last_run_at
    if not tasks:
        return Probe(FAILING, {"error": "no periodic task enabled (run migrate)", "tasks": {}})
    silent = None if last_any is None else round((now - last_any).total_seconds(), 1)
    status = FAILING if late or silent is None or silent > grace else OK
    return Probe(status, {"silent_seconds": silent, "threshold_seconds": grace,
                          "late": late, "tasks": tasks})


def worker_probe(timeout: float) -> Probe:
    """At least one Celery worker answers a ping through the broker."""
    from tradingsite.celery import app

    started = time.perf_counter()
    try:
        replies = app.control.ping(timeout=min(timeout, 1.0), limit=1) or []
    except Exception as exc:
        return _failure(exc, "workers")
    answered = len(replies)
    details = {"answered": answered,
               "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if not answered:
        return Probe(FAILING, {**details, "error": "no worker answered a ping"})
    return Probe(OK, details)


def account_streams_probe(timeout: float) -> Probe:
    """Every enabled account's live link has an owner that renews its lease, and its last REST
    reconciliation is no older than three of its intervals (plus a lease's worth of time for a
    take-over). Counts and the oldest ages only: no account names, no balances.
    """
    from execution.models import AccountStream, ExchangeAccount
    from execution.streams import interval_lease_seconds

    now = timezone.now()
    accounts = list(ExchangeAccount.objects.filter(enabled=True))
    if not accounts:
        return Probe(NONE_CONFIGURED, {"streams": {}})
    streams = AccountStream.objects.in_bulk([account.pk for account in accounts])
    unowned = stale = connected = 0
    oldest_reconcile: float | None = None
    oldest_message: float | None = None
    for account in accounts:
        stream = streams.get(account.pk)
        if stream is None or not stream.owner or not stream.lease_until or (
                stream.lease_until < now):
            unowned += 1
            continue
        connected += stream.connected
        interval = account.sync_settings().reconcile_interval_seconds
        allowed = 3 * interval + interval_lease_seconds(interval)
        reconciled = _age(now, stream.last_reconcile_at)
        if reconciled is None:
            reconciled = _age(now, stream.owner_since)  # still doing its first one
        if reconciled is None or reconciled > allowed:
            stale += 1
        oldest_reconcile = max(oldest_reconcile or 0.0, reconciled or 0.0)
        message = _age(now, stream.last_message_at)
        if message is not None:
            oldest_message = max(oldest_message or 0.0, message)
    details = {"accounts": len(accounts), "unowned": unowned, "stale": stale,
               "connected": connected, "oldest_reconcile_age_seconds": oldest_reconcile,
               "oldest_message_age_seconds": oldest_message}
    return Probe(FAILING if unowned or stale else OK, details)


def _age(now: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else round(max((now - moment).total_seconds(), 0.0), 1)


# --- running them ----------------------------------------------------------------------------

def _run_bounded(probe: Callable[[float], Probe], timeout: float, name: str) -> Probe:
    """The probe's answer, or a failing one after ``timeout`` (its thread is abandoned)."""
    answer: list[Probe] = []

    def run() -> None:
        try:
            answer.append(probe(timeout))
        except Exception as exc:
            answer.append(_failure(exc, name))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=f"health-{name}", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not answer:
        log.warning("health: %s probe did not answer within %.1f s", name, timeout)
        return Probe(FAILING, {"error": f"no answer within {timeout:g} s"})
    return answer[0]


def check_health(probes: dict[str, str] | None = None) -> dict[str, Any]:
    """Run every probe at once; ``{"status": "ok"|"failing", "components": {…}}``."""
    probes = settings.HEALTH_PROBES if probes is None else probes
    timeout = watchdog_config().probe_timeout_seconds
    results: dict[str, Probe] = {}

    def run(name: str, path: str) -> None:
        try:
            probe = import_string(path)
        except ImportError as exc:
            results[name] = _failure(exc, name)
            return
        results[name] = _run_bounded(probe, timeout, name)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in probes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 2)
    components = {name: (results.get(name) or Probe(FAILING, {"error": "no answer"})).as_dict()
                  for name in probes}
    failing = [name for name, c in components.items() if c["status"] == FAILING]
    return {"status": FAILING if failing else OK, "failing": failing,
            "checked_at": timezone.now().isoformat(), "components": components}


_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()


def cached_health() -> dict[str, Any]:
    """``check_health()``, shared by requests within ``CACHE_SECONDS`` (one run at a time)."""
    with _cache_lock:
        fresh = _cache.get("at") is not None and time.monotonic() - _cache["at"] < CACHE_SECONDS
        if not fresh:
            _cache["report"] = check_health()
            _cache["at"] = time.monotonic()
        return _cache["report"]


def forget_cached_health() -> None:
    _cache.clear()
