"""/healthz: no login, no trading data, 200 or 503 per component, every probe time-bounded."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from execution.models import AccountStream
from notifications.health import (
    FAILING,
    OK,
    Probe,
    account_streams_probe,
    beat_probe,
    broker_probe,
    check_health,
    database_probe,
    worker_probe,
)
from tradingsite.schedule import ensure_periodic_tasks
from tradingsite.testing.factories import ExchangeAccountFactory, PositionFactory

RELEASE = threading.Event()


def workers_ok(timeout: float) -> Probe:
    return Probe(OK, {"answered": 1})


def hangs(timeout: float) -> Probe:
    RELEASE.wait(30)  # a probe stuck on the network: released by the test at its end
    return Probe(OK)


def explodes(timeout: float) -> Probe:
    raise ConnectionError("redis://:hunter2@10.0.0.5:6379/0 refused")


REAL = {"database": "notifications.health.database_probe",
        "broker": "notifications.health.broker_probe",
        "beat": "notifications.health.beat_probe",
        "workers": "notifications.tests.test_health.workers_ok",
        "account_streams": "notifications.health.account_streams_probe"}


def stream_owned(account, *, reconciled_ago: timedelta) -> None:
    """The account's stream held by a live owner, connected, last reconciled that long ago."""
    now = timezone.now()
    AccountStream.objects.update_or_create(account=account, defaults={
        "owner": "host:1:abc", "lease_until": now + timedelta(seconds=10), "owner_since": now,
        "mode": AccountStream.Mode.STREAM, "connected": True,
        "last_message_at": now - timedelta(seconds=2),
        "last_reconcile_at": now - reconciled_ago})


def beat_ran(ago: timedelta = timedelta(0)) -> None:
    """Every periodic task was just sent (as beat records it)."""
    ensure_periodic_tasks()
    PeriodicTask.objects.update(last_run_at=timezone.now() - ago)


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_200_without_login_when_every_component_is_up(client, settings):
    settings.HEALTH_PROBES = REAL
    position = PositionFactory(symbol="SECRET/USDT:USDT")  # trading data that must not show
    with time_machine.travel(timezone.now(), tick=False):  # the ages read exactly 0
        beat_ran()
        stream_owned(position.strategy.account, reconciled_ago=timedelta(seconds=30))
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    report = response.json()
    assert report["status"] == "ok" and report["failing"] == []
    assert list(report["components"]) == ["database", "broker", "beat", "workers",
                                          "account_streams"]
    broker = report["components"]["broker"]
    if settings.REDIS_URL:  # the PostgreSQL + Redis pass: a real PING
        assert (broker["status"], broker["kind"]) == ("ok", "redis")
        assert broker["latency_ms"] < 1000
    else:
        assert broker == {"status": "ok", "kind": "in-memory (this process only)"}
    assert report["components"]["account_streams"] == {
        "status": "ok", "accounts": 1, "unowned": 0, "stale": 0, "connected": 1,
        "oldest_reconcile_age_seconds": 30.0, "oldest_message_age_seconds": 2.0}
    beat = report["components"]["beat"]
    assert beat["tasks"]["lifecycle: check timeouts"] == {"every_seconds": 15.0,
                                                         "age_seconds": 0.0, "status": "ok"}
    assert "SECRET" not in response.content.decode()
    assert position.strategy.account.name not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_naming_the_failing_component(client, settings):
    settings.HEALTH_PROBES = {**REAL, "broker": "notifications.tests.test_health.explodes"}
    with time_machine.travel(timezone.now(), tick=False):
        beat_ran(ago=timedelta(minutes=5))  # beat silent for 5 minutes
        response = client.get("/healthz")

    assert response.status_code == 503
    report = response.json()
    assert report["failing"] == ["broker", "beat"]
    assert report["components"]["broker"] == {"status": "failing", "error": "ConnectionError"}
    assert "hunter2" not in response.content.decode()
    assert report["components"]["beat"]["silent_seconds"] == 300.0


def test_a_hung_probe_is_abandoned_within_its_timeout(monkeypatch):
    monkeypatch.setenv("LIVE_TRADING__WATCHDOG__PROBE_TIMEOUT_SECONDS", "0.2")
    started = time.perf_counter()
    try:
        report = check_health({"stuck": "notifications.tests.test_health.hangs",
                               "workers": "notifications.tests.test_health.workers_ok"})
    finally:
        RELEASE.set()
    assert time.perf_counter() - started < 2.0
    assert report["components"] == {
        "stuck": {"status": "failing", "error": "no answer within 0.2 s"},
        "workers": {"status": "ok", "answered": 1}}
    assert report["status"] == FAILING


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "status"), [
    ("post", "/healthz", 405), ("put", "/healthz", 405), ("delete", "/healthz", 405),
    ("get", "/healthz?verbose=1", 400)])
def test_healthz_takes_nothing_but_a_plain_get(client, method, path, status, settings):
    settings.HEALTH_PROBES = {}
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert json.loads(response.content)["code"] in ("method_not_allowed", "unknown_parameter")


@pytest.mark.django_db
def test_concurrent_requests_share_one_run_of_the_probes(client, settings, monkeypatch):
    from notifications import health

    settings.HEALTH_PROBES = {"workers": "notifications.tests.test_health.workers_ok"}
    runs = []
    real = health.check_health
    monkeypatch.setattr(health, "check_health", lambda: runs.append(1) or real())
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert len(runs) == 1


# --- the probes ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_beat_probe_reports_each_tasks_age_and_the_late_ones(clock):
    beat_ran()
    risk = PeriodicTask.objects.get(task="risk.tasks.check_risk")
    risk.last_run_at = timezone.now() - timedelta(seconds=100)  # every 30 s + 60 s grace
    risk.save()

    probe = beat_probe(1.0)

    assert probe.status == FAILING
    assert probe.details["late"] == ["risk: check risk"]
    assert probe.details["silent_seconds"] == 0.0
    assert probe.details["tasks"]["risk: check risk"] == {"every_seconds": 30.0,
                                                         "age_seconds": 100.0, "status": "late"}
    clock.shift(timedelta(seconds=61))
    assert beat_probe(1.0).details["silent_seconds"] == 61.0


@pytest.mark.django_db
def test_a_disabled_task_is_not_watched_and_no_task_at_all_is_failing():
    beat_ran()
    PeriodicTask.objects.filter(task="risk.tasks.check_risk").update(
        enabled=False, last_run_at=timezone.now() - timedelta(days=1))
    assert beat_probe(1.0).status == OK
    PeriodicTask.objects.all().delete()
    assert beat_probe(1.0).as_dict() == {"status": "failing", "tasks": {},
                                         "error": "no periodic task enabled (run migrate)"}


@pytest.mark.django_db
def test_a_task_beat_never_sent_counts_from_its_last_change(clock):
    ensure_periodic_tasks()
    PeriodicTask.objects.update(last_run_at=None, date_changed=timezone.now())
    PeriodicTask.objects.filter(task="risk.tasks.check_risk").update(
        last_run_at=timezone.now())
    clock.shift(timedelta(seconds=80))  # the 5 s, 10 s and 15 s tasks are late now (+60 s)
    probe = beat_probe(1.0)

    assert probe.status == FAILING
    assert probe.details["silent_seconds"] == 80.0
    tasks = probe.details["tasks"]
    assert tasks["notifications: prune"] == {"every_seconds": 3600.0, "age_seconds": None,
                                             "status": "ok"}  # in its first hour
    assert tasks["lifecycle: check timeouts"]["status"] == "late"
    assert tasks["risk: check risk"] == {"every_seconds": 30.0, "age_seconds": 80.0,
                                         "status": "ok"}

    PeriodicTask.objects.update(last_run_at=None)
    assert beat_probe(1.0).details["silent_seconds"] is None  # beat never sent anything


@pytest.mark.django_db
def test_the_database_probe_measures_a_round_trip():
    probe = database_probe(1.0)
    assert probe.status == OK and probe.details["latency_ms"] >= 0


def test_without_a_worker_the_worker_probe_fails_within_its_timeout():
    started = time.perf_counter()
    probe = worker_probe(0.2)
    assert time.perf_counter() - started < 1.5
    assert probe.as_dict()["status"] == FAILING
    assert probe.details["error"] == "no worker answered a ping"


@pytest.mark.django_db
def test_a_running_worker_answers_the_worker_probe():
    from celery.contrib.testing.worker import start_worker

    from tradingsite.celery import app

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        probe = worker_probe(2.0)
    assert (probe.status, probe.details["answered"]) == (OK, 1)


def test_the_broker_probe_pings_redis_when_there_is_one(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    probe = broker_probe(0.2)
    assert probe.as_dict() == {"status": "failing", "error": "ConnectionError"}


@pytest.mark.django_db
def test_without_an_enabled_account_no_stream_is_expected():
    ExchangeAccountFactory(name="switched-off", enabled=False)
    assert account_streams_probe(1.0) == Probe("none configured", {"streams": {}})


@pytest.mark.django_db
def test_an_account_whose_stream_has_no_live_owner_fails_the_probe():
    """Nothing runs the account's stream (or its owner died and nobody took over): the
    platform is not watching that account, whatever the other components say."""
    owned, orphaned, _never_started = (ExchangeAccountFactory(name=name)
                              for name in ("owned", "orphaned", "never-started"))
    stream_owned(owned, reconciled_ago=timedelta(seconds=10))
    stream_owned(orphaned, reconciled_ago=timedelta(seconds=10))
    AccountStream.objects.filter(pk=orphaned.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1))

    probe = account_streams_probe(1.0)

    assert probe.status == FAILING
    assert (probe.details["accounts"], probe.details["unowned"], probe.details["stale"]) == (
        3, 2, 0)


@pytest.mark.django_db
def test_a_stream_whose_reconciliation_stopped_fails_the_probe():
    """Owned and renewing, but its REST reconciliation (the source of truth) has not run for
    three intervals and a lease: stale. At the edge it still passes."""
    account = ExchangeAccountFactory(name="stuck", live_trading={
        "accountSync": {"reconcileIntervalSeconds": 60}})
    allowed = 3 * 60 + 20  # three intervals + a lease (a third of 60 s)
    stream_owned(account, reconciled_ago=timedelta(seconds=allowed))
    assert account_streams_probe(1.0).status == OK

    stream_owned(account, reconciled_ago=timedelta(seconds=allowed + 1))
    probe = account_streams_probe(1.0)
    assert (probe.status, probe.details["stale"]) == (FAILING, 1)
    assert probe.details["oldest_reconcile_age_seconds"] == pytest.approx(allowed + 1, abs=0.2)


@pytest.mark.django_db
def test_healthz_is_not_redirected_to_https_the_rest_is(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.HEALTH_PROBES = {"workers": "notifications.tests.test_health.workers_ok"}
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 301
