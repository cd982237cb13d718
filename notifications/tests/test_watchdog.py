"""The watchdog: beat, workers and the platform going silent, and recovering, told directly."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications.channels import parse_notify_urls
from notifications.health import check_health
from notifications.models import Notification
from notifications.watchdog import Watchdog, http_source
from tradingsite.live_config import WatchdogConfig
from tradingsite.schedule import ensure_periodic_tasks

CFG = WatchdogConfig()  # every 15 s; beat 60 s, workers 60 s, platform 30 s
PROBES = {"database": "notifications.health.database_probe",
          "beat": "notifications.health.beat_probe",
          "workers": "notifications.tests.test_health.workers_ok"}


class FakeBeat:
    """Sends each periodic task when it falls due, as django-celery-beat records it."""

    def __init__(self) -> None:
        ensure_periodic_tasks()
        self.running = True
        PeriodicTask.objects.update(last_run_at=timezone.now())

    def tick(self) -> None:
        if not self.running:
            return
        now = timezone.now()
        for task in PeriodicTask.objects.filter(enabled=True).select_related("interval"):
            if now - task.last_run_at >= task.interval.schedule.run_every:
                PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=now)


def watchdog_for(sink, source) -> Watchdog:
    return Watchdog(source=source, cfg=CFG, channels=parse_notify_urls(sink.url),
                    where="https://trading.example.test")


@pytest.mark.django_db(transaction=True)
def test_a_stopped_beat_is_reported_within_its_threshold_plus_one_interval_and_its_recovery(
        clock, sink, settings):
    settings.HEALTH_PROBES = PROBES
    beat = FakeBeat()
    watchdog = watchdog_for(sink, lambda: check_health())
    stopped_at = timezone.now() + timedelta(seconds=47)  # between two watchdog checks
    told_at = None
    for second in range(0, 600, 1):
        clock.move_to(stopped_at - timedelta(seconds=47) + timedelta(seconds=second))
        if timezone.now() >= stopped_at:
            beat.running = False
        beat.tick()
        if second % 15 == 0:
            watchdog.step()
            if sink.received and told_at is None:
                told_at = timezone.now()
                break

    assert told_at is not None
    assert timedelta(seconds=60) < told_at - stopped_at <= timedelta(seconds=60 + 15)
    [alarm] = sink.received
    assert alarm["title"] == "CRITICAL: Beat silent (https://trading.example.test)"
    assert alarm["type"] == "failure"
    assert alarm["message"].startswith("Beat silent: no periodic task sent for 75 s "
                                       "(threshold 60 s).\nTimeout checks, risk checks")
    assert Notification.objects.count() == 0  # directly through Apprise, not the outbox

    for _ in range(4):  # silent on: nothing more is said
        clock.shift(timedelta(seconds=15))
        watchdog.step()
    assert len(sink.received) == 1

    beat.running = True
    beat.tick()
    clock.shift(timedelta(seconds=15))
    watchdog.step()
    assert len(sink.received) == 2
    assert sink.received[1]["title"] == ("RECOVERED: Beat silent is over "
                                         "(https://trading.example.test)")
    assert sink.received[1]["message"] == ("Beat silent ended after 75 s; it answers normally "
                                           "again.")
    assert sink.received[1]["type"] == "success"


class HealthServer:
    """A /healthz that answers a canned report (or nothing while stopped)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.report = {"status": "ok", "components": {}}
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(owner.report).encode()
                self.send_response(503 if owner.report["status"] == "failing" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def platform():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = HealthServer(port)
    yield server
    server.stop()


def test_a_platform_that_stops_answering_is_reported_then_its_return(clock, sink, platform):
    watchdog = watchdog_for(sink, http_source(f"http://127.0.0.1:{platform.port}/healthz", 2))
    assert watchdog.step() is False  # nothing listens yet: not long enough to say so
    clock.shift(timedelta(seconds=15))
    assert watchdog.step() is False
    clock.shift(timedelta(seconds=15))
    assert watchdog.step() is True  # 30 s without an answer

    [alarm] = sink.received
    assert alarm["title"] == "CRITICAL: Platform not answering (https://trading.example.test)"
    assert alarm["message"].startswith("Platform not answering for 30 s: URLError: [Errno 111] "
                                       "Connection refused.\nNothing is supervised")

    platform.start()
    clock.shift(timedelta(seconds=15))
    assert watchdog.step() is True
    assert sink.received[1]["title"].startswith("RECOVERED: Platform not answering is over")


def test_workers_silent_past_their_threshold_are_reported(clock, sink, platform):
    platform.report = {"status": "failing", "components": {
        "broker": {"status": "ok"},
        "workers": {"status": "failing", "error": "no worker answered a ping"}}}
    platform.start()
    watchdog = watchdog_for(sink, http_source(f"http://127.0.0.1:{platform.port}/healthz", 2))
    for _ in range(4):  # 0, 15, 30, 45 s: below the 60 s threshold
        watchdog.step()
        clock.shift(timedelta(seconds=15))
    assert sink.received == []
    watchdog.step()  # 60 s
    assert [m["title"] for m in sink.received] == [
        "CRITICAL: Workers silent (https://trading.example.test)"]
    assert "no worker answered a ping" in sink.received[0]["message"]


def test_beat_is_not_judged_while_the_database_cannot_be_read(clock, sink, platform):
    platform.report = {"status": "failing", "components": {
        "database": {"status": "failing", "error": "OperationalError"},
        "beat": {"status": "failing", "error": "OperationalError"}}}
    platform.start()
    watchdog = watchdog_for(sink, http_source(f"http://127.0.0.1:{platform.port}/healthz", 2))
    for _ in range(3):
        watchdog.step()
        clock.shift(timedelta(seconds=15))
    assert [m["title"] for m in sink.received] == [
        "CRITICAL: Database failing (https://trading.example.test)"]


def test_a_message_the_channel_refused_is_sent_again_at_the_next_checks(clock, sink, platform):
    sink.stop()
    watchdog = watchdog_for(sink, http_source(f"http://127.0.0.1:{platform.port}/healthz", 2))
    watchdog.cfg = WatchdogConfig(platform_silence_seconds=1)
    watchdog.step()
    clock.shift(timedelta(seconds=15))
    watchdog.step()  # the alarm: the sink is down
    assert len(watchdog.pending) == 1
    sink.start()
    clock.shift(timedelta(seconds=15))
    watchdog.step()
    assert [m["title"] for m in sink.received] == [
        "CRITICAL: Platform not answering (https://trading.example.test)"]
    assert watchdog.pending == []


def test_watchdog_once_exits_1_naming_what_is_wrong(sink, platform, settings):
    settings.NOTIFY_URLS = sink.url
    platform.report = {"status": "failing", "components": {
        "broker": {"status": "ok"},
        "workers": {"status": "failing", "error": "no worker answered a ping"}}}
    platform.start()
    url = f"http://127.0.0.1:{platform.port}/healthz"

    with pytest.raises(CommandError) as info:
        call_command("watchdog", "--url", url, "--once")

    assert str(info.value) == f"{url}: CRITICAL: Workers silent (http://127.0.0.1:{platform.port})"
    assert len(sink.received) == 1
    platform.report = {"status": "ok", "components": {"workers": {"status": "ok"}}}
    call_command("watchdog", "--url", url, "--once")


def test_the_watchdog_command_refuses_a_bad_interval():
    with pytest.raises(CommandError, match="--interval: must be between 1 and 3600 s, got 0"):
        call_command("watchdog", "--interval", "0", "--once")
