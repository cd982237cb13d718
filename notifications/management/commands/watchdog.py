"""``manage.py watchdog``: watch /healthz from outside the platform and speak through Apprise."""

from __future__ import annotations

import dataclasses
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.channels import ChannelConfigError, watchdog_channels
from notifications.health import watchdog_config
from notifications.watchdog import Watchdog, http_source


def default_url() -> str:
    if settings.WATCHDOG_URL:
        return settings.WATCHDOG_URL
    if settings.SITE_URL:
        return f"{settings.SITE_URL}/healthz"
    return f"http://127.0.0.1:{settings.RUNPLATFORM_PORT}/healthz"


class Command(BaseCommand):
    help = ("Poll /healthz every few seconds (liveTrading.watchdog) and notify directly "
            "through Apprise (WATCHDOG_NOTIFY_URLS, else NOTIFY_URLS) when the platform stops "
            "answering, beat or the workers go silent, and when they recover.")
    # It must start while the database it watches is down: no system checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=None,
                            help="The /healthz to poll (WATCHDOG_URL, else SITE_URL/healthz, "
                                 "else http://127.0.0.1:RUNPLATFORM_PORT/healthz).")
        parser.add_argument("--interval", type=float, help="Seconds between polls.")
        parser.add_argument("--once", action="store_true",
                            help="Poll once, print the report's verdict, exit 1 if failing "
                                 "(for cron).")

    def handle(self, *args: Any, url: str | None = None, interval: float | None = None,
               once: bool = False, **options: Any) -> None:
        cfg = watchdog_config()
        if interval is not None:
            if not 1 <= interval <= 3600:
                raise CommandError(f"--interval: must be between 1 and 3600 s, got {interval:g}")
            cfg = dataclasses.replace(cfg, interval_seconds=interval)
        try:
            channels = watchdog_channels()
        except ChannelConfigError as exc:
            raise CommandError(str(exc)) from None
        url = url or default_url()
        watchdog = Watchdog(source=http_source(url, cfg.probe_timeout_seconds + 3), cfg=cfg,
                            channels=channels, where=url.rsplit("/healthz", 1)[0] or url,
                            out=lambda line: (self.stdout.write(line), self.stdout.flush()))
        if once:
            self._once(watchdog, url)
            return
        self.stdout.write(f"watchdog: {url} every {cfg.interval_seconds:g} s; beat silent after "
                          f"{cfg.beat_silence_seconds:g} s, workers after "
                          f"{cfg.worker_silence_seconds:g} s, platform after "
                          f"{cfg.platform_silence_seconds:g} s; {len(channels)} channel(s): "
                          + (", ".join(c.name for c in channels) or "none (set NOTIFY_URLS)"))
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        watchdog.run(stop)
        self.stdout.write("watchdog: stopped")

    def _once(self, watchdog: Watchdog, url: str) -> None:
        """One poll with every threshold at zero: report what is wrong right now."""
        watchdog.cfg = dataclasses.replace(watchdog.cfg, platform_silence_seconds=0,
                                           worker_silence_seconds=0)
        messages = watchdog.check()
        watchdog.notify(messages)
        if messages:
            raise CommandError(f"{url}: " + "; ".join(m.title for m in messages))
        self.stdout.write(f"{url}: ok")
