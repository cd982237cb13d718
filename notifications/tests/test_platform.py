"""runplatform's own watchdog and its last messages on the way out (in-process Platform)."""

from __future__ import annotations

import pytest

from notifications.models import Notification
from operations.runtime import Platform, PlatformOptions


class FakePart:
    def __init__(self, name: str) -> None:
        self.name, self.alive = name, True

    def start(self) -> str:
        return "fake"

    def stop(self, timeout: float) -> bool:
        self.alive = False
        return True

    def is_alive(self) -> bool:
        return self.alive


@pytest.mark.django_db(transaction=True)
def test_the_embedded_watchdog_runs_with_the_platform_and_stopping_is_sent_before_it_ends(
        settings, sink, notify_to):
    settings.WATCHDOG_EMBEDDED = True
    settings.HEALTH_PROBES = {"streams": "notifications.health.account_streams_probe"}
    notify_to(sink.url)
    lines: list[str] = []
    platform = Platform(PlatformOptions(port=8123), out=lines.append)
    platform.worker, platform.beat = FakePart("worker"), FakePart("beat")

    platform._announce("platform_started", details="worker, beat")
    assert platform.watchdog.thread.is_alive()
    platform.stop_reason = "SIGTERM"
    assert platform.stop() == 0

    assert lines[0] == "  watchdog:      every 15 s, in-process, 1 channel(s)"
    assert lines[lines.index("stopping (SIGTERM) ...") + 1:] == [
        "  watchdog:      stopped", "  notifications: 2 sent on the way out",
        "  beat: stopped", "  worker: stopped", "stopped cleanly"]
    assert not platform.watchdog.thread.is_alive()
    assert [m["title"] for m in sink.received] == ["INFO: Platform started",
                                                   "WARNING: Platform stopping"]
    assert sink.received[1]["message"].startswith("embedded on ")
    assert "(SIGTERM): the shutdown sequence finished in time." in sink.received[1]["message"]
    assert Notification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_without_the_embedded_watchdog_nothing_is_started(settings):
    settings.WATCHDOG_EMBEDDED = False
    platform = Platform(PlatformOptions(), out=lambda line: None)
    platform.worker = FakePart("worker")
    platform._announce("platform_started", details="worker")
    assert getattr(platform, "watchdog", None) is None
    assert Notification.objects.get().kind == "platform_started"
