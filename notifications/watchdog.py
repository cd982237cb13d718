"""The watchdog: reads ``/healthz`` every few seconds and speaks when the platform goes silent.

It runs outside the platform (``manage.py watchdog``, its own small process: a
Procfile entry, a systemd unit or cron) and sends **directly through Apprise** to the
channels of ``WATCHDOG_NOTIFY_URLS`` (default ``NOTIFY_URLS``) — never through the
outbox, whose delivery needs the very workers, broker and database it watches. It says:

* **platform down** — ``/healthz`` unreachable (refused, timed out, not JSON), or its
  database or broker failing, for ``platformSilenceSeconds``;
* **beat silent** — beat sent no periodic task for ``beatSilenceSeconds``, or a task is
  that much past its interval (read from the report's ages: detected within the
  threshold plus one ``intervalSeconds``);
* **workers silent** — no worker answered a ping for ``workerSilenceSeconds``;
* **recovered** — once each of those is over, with how long it lasted.

Each condition is told once when it starts and once when it ends. A send that fails is
retried at the next checks (1 s doubling, at most one interval apart). The embedded
``runplatform`` runs one in a thread too, reading its own health without HTTP.

Made of small steps for tests: ``check()`` returns the messages a poll calls for,
``notify()`` sends them, ``step()`` does both and the retries.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from notifications import transport
from notifications.channels import ChannelConfigError, EnvChannel, resolve
from notifications.messages import duration
from tradingsite.env import mask_url
from tradingsite.live_config import WatchdogConfig

log = logging.getLogger(__name__)

Output = Callable[[str], None]
HealthSource = Callable[[], dict[str, Any]]
MAX_PENDING = 100
GIVE_UP = timedelta(hours=24)


class HealthUnavailable(Exception):
    """``/healthz`` gave no report (the message says why, without credentials)."""


def http_source(url: str, timeout: float) -> HealthSource:
    """GET ``url``: its JSON report on 200 or 503, else ``HealthUnavailable``."""

    def fetch() -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                       "User-Agent": "trading-watchdog"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body, status = response.read(1_000_000), response.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(1_000_000), exc.code
        except (OSError, ValueError) as exc:  # refused, reset, timeout, DNS, bad URL
            reason = getattr(exc, "reason", None) or exc
            raise HealthUnavailable(mask_url(f"{type(exc).__name__}: {reason}")) from None
        if status not in (200, 503):
            raise HealthUnavailable(f"HTTP {status}")
        try:
            report = json.loads(body)
        except ValueError:
            raise HealthUnavailable(f"HTTP {status} without a JSON report") from None
        if not isinstance(report, dict) or not isinstance(report.get("components"), dict):
            raise HealthUnavailable(f"HTTP {status}: not a health report")
        return report

    return fetch


def local_source() -> dict[str, Any]:
    """This process's own health, without HTTP (the embedded watchdog)."""
    from notifications.health import check_health

    return check_health()


@dataclass(frozen=True)
class Message:
    kind: str
    severity: str
    title: str
    body: str
    recovered: bool = False


@dataclass
class Condition:
    """One thing the watchdog watches: bad since when, told or not."""

    name: str
    since: datetime | None = None
    told: bool = False
    detail: str = ""


@dataclass
class Pending:
    channel: EnvChannel
    message: Message
    first_at: datetime
    attempts: int = 0
    next_at: datetime | None = None


LABELS = {"platform": "Platform not answering", "database": "Database failing",
          "broker": "Broker failing", "beat": "Beat silent", "workers": "Workers silent"}
CONSEQUENCES = {
    "platform": "Nothing is supervised while it is down: timeouts, risk checks and closes "
                "need the platform. Check the web process and its host.",
    "database": "Nothing is recorded or supervised: positions past their limit are not "
                "closed. Check PostgreSQL (DATABASE_URL).",
    "broker": "No task reaches the workers: closes, timeouts and deliveries stall. Check "
              "Redis (REDIS_URL).",
    "beat": "Timeout checks, risk checks and the action sweep are not scheduled: positions "
            "past their limit will not be closed. Start or restart the one beat process "
            "(Procfile 'beat').",
    "workers": "Orders, closes and notifications are not processed. Start or restart the "
               "workers (Procfile 'worker').",
}


@dataclass
class Watchdog:
    source: HealthSource
    cfg: WatchdogConfig
    channels: list[EnvChannel]
    where: str = "the platform"
    send: Callable[..., transport.SendResult] = transport.send
    out: Output = log.info
    conditions: dict[str, Condition] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    dropped: int = 0

    def __post_init__(self) -> None:
        for name in LABELS:
            self.conditions.setdefault(name, Condition(name))

    # -- one poll ---------------------------------------------------------------------------
    def check(self, now: datetime | None = None) -> list[Message]:
        """Read the health once; the messages it calls for (new conditions, recoveries)."""
        now = now or timezone.now()
        try:
            report = self.source()
        except HealthUnavailable as exc:
            return self._observe("platform", str(exc), now, self.cfg.platform_silence_seconds)
        except Exception as exc:  # the local source failing is the platform failing
            return self._observe("platform", f"{type(exc).__name__}", now,
                                 self.cfg.platform_silence_seconds)
        messages = self._observe("platform", "", now, self.cfg.platform_silence_seconds)
        components = report.get("components", {})
        for name in ("database", "broker"):
            part = components.get(name) or {}
            bad = part.get("status") == "failing"
            messages += self._observe(name, str(part.get("error") or "failing") if bad else "",
                                      now, self.cfg.platform_silence_seconds)
        beat = self._beat_problem(components.get("beat") or {})
        if beat is not None:  # unknown while the database cannot be read: left as it was
            messages += self._observe("beat", beat, now, 0)
        workers = components.get("workers") or {}
        if (components.get("broker") or {}).get("status") != "failing":
            messages += self._observe(
                "workers", str(workers.get("error") or "no answer")
                if workers.get("status") == "failing" else "", now,
                self.cfg.worker_silence_seconds)
        return messages

    def _beat_problem(self, beat: dict[str, Any]) -> str | None:
        """Beat is silent by the watchdog's own threshold, from the ages in the report;
        None when the report could not tell (its database failing)."""
        threshold = self.cfg.beat_silence_seconds
        if "tasks" not in beat:
            return None
        silent = beat.get("silent_seconds")
        if silent is None:
            return "beat never sent a periodic task"
        late = [f"{name} ({task.get('age_seconds')} s, every {task.get('every_seconds'):g} s)"
                for name, task in (beat.get("tasks") or {}).items()
                if task.get("age_seconds") is None
                or task["age_seconds"] > task.get("every_seconds", 0) + threshold]
        if silent > threshold:
            return f"no periodic task sent for {silent:.0f} s (threshold {threshold:g} s)"
        if late:
            return "late: " + "; ".join(late[:5])
        return ""

    def _observe(self, name: str, problem: str, now: datetime, after: float) -> list[Message]:
        """Update one condition; a message when it has lasted ``after`` s, or when it ends."""
        condition = self.conditions[name]
        if problem:
            if condition.since is None:
                condition.since = now
            condition.detail = problem
            lasted = (now - condition.since).total_seconds()
            if not condition.told and lasted >= after:
                condition.told = True
                return [self._alarm(name, problem, lasted)]
            return []
        if condition.since is None:
            return []
        lasted = (now - condition.since).total_seconds()
        told, condition.since, condition.told, condition.detail = condition.told, None, False, ""
        return [self._recovery(name, lasted)] if told else []

    def _alarm(self, name: str, problem: str, lasted: float) -> Message:
        title = f"CRITICAL: {LABELS[name]} ({self.where})"
        since = f" for {duration(lasted)}" if lasted >= 1 else ""
        body = (f"{LABELS[name]}{since}: {problem}.\n{CONSEQUENCES[name]}\n"
                f"Watchdog checking {self.where} every {self.cfg.interval_seconds:g} s.")
        return Message(kind=f"watchdog_{name}", severity="CRITICAL", title=title, body=body)

    def _recovery(self, name: str, lasted: float) -> Message:
        title = f"RECOVERED: {LABELS[name]} is over ({self.where})"
        body = f"{LABELS[name]} ended after {duration(lasted)}; it answers normally again."
        return Message(kind=f"watchdog_{name}", severity="CRITICAL", title=title, body=body,
                       recovered=True)

    # -- speaking ---------------------------------------------------------------------------
    def notify(self, messages: list[Message], now: datetime | None = None) -> int:
        """Queue each message for every channel that takes it, then send what is due."""
        now = now or timezone.now()
        for message in messages:
            self.out(message.title)
            for channel in self.channels:
                if channel.rules.accepts(message.kind, message.severity):
                    self.pending.append(Pending(channel, message, first_at=now, next_at=now))
        if len(self.pending) > MAX_PENDING:
            self.dropped += len(self.pending) - MAX_PENDING
            self.pending = self.pending[-MAX_PENDING:]
        return self.flush(now)

    def flush(self, now: datetime | None = None) -> int:
        """Send the queued messages that are due; the number sent."""
        now = now or timezone.now()
        sent, keep = 0, []
        for item in self.pending:
            if item.next_at and item.next_at > now:
                keep.append(item)
                continue
            if now - item.first_at > GIVE_UP:
                self.out(f"  gave up sending to {item.channel.name}: {item.message.title}")
                continue
            try:
                url = resolve(item.channel.url)
            except ChannelConfigError as exc:
                result = transport.SendResult(ok=False, detail=str(exc), duration_ms=0)
                secrets: tuple[str, ...] = ()
            else:
                secrets = url.secrets
                result = self.send(url.url, title=item.message.title, body=item.message.body,
                                   severity=item.message.severity, secrets=secrets,
                                   notify_type="SUCCESS" if item.message.recovered else None)
            if result.ok:
                sent += 1
                continue
            item.attempts += 1
            delay = min(2 ** (item.attempts - 1), self.cfg.interval_seconds)
            item.next_at = now + timedelta(seconds=delay)
            self.out(f"  {item.channel.name}: not delivered ({transport.mask(result.detail, secrets)}); "
                     f"retry in {delay:g} s")
            keep.append(item)
        self.pending = keep
        return sent

    def step(self, now: datetime | None = None) -> bool:
        """One poll and its messages, plus retries; True if anything was said."""
        now = now or timezone.now()
        messages = self.check(now)
        sent = self.notify(messages, now)
        return bool(messages) or sent > 0

    def run(self, stop: threading.Event) -> None:
        """Poll every ``intervalSeconds`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # the watchdog itself must keep watching
                log.exception("watchdog step failed")
            stop.wait(self.cfg.interval_seconds)


class EmbeddedWatchdog:
    """The watchdog thread of ``runplatform`` (started and stopped by its signals)."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def _run(self) -> None:
        from django.db import connections

        try:
            self.watchdog.run(self.stop_event)
        finally:
            connections.close_all()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        self.stop_event.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()
