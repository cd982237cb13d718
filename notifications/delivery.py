"""The delivery pass: render and route new notifications, send what is due, fold, retry.

One pass (``deliver_pass``), run by a Celery task after every commit that recorded a
notification, by itself when a retry or a digest falls due, and by the beat sweep:

1. **Route** (one pass at a time: an advisory lock on PostgreSQL, SQLite's write lock):
   each new notification is rendered (``messages.render``) and gets one ``Delivery``
   per enabled channel whose rules take its severity and kind. A repeat of the same
   kind on the same object within ``dedupWindowSeconds`` is *folded*: it waits for the
   channel's next digest instead of being sent alone.
2. **Send**, per channel, under a lease (so two workers never send the same message):
   oldest first; in quiet hours everything below CRITICAL is *held* until they end; past
   the channel's rate limit a message is folded; a failed send is retried after
   ``retryFirstDelaySeconds × 2^n`` (1 s, 2 s, 4 s … at most ``retryMaxDelaySeconds``)
   and the channel pauses for as long, so a dead endpoint is not hammered and the order
   is kept; a message not delivered within ``giveUpAfterHours`` ends *failed*.
3. **Digest**: a window (``rateLimitSeconds``) after the first folded message, the
   channel gets one message listing what was folded, grouped by kind and object.

Delivery is at least once: a worker killed between the server's answer and the write
that records it sends that one message again when the lease runs out.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from notifications import transport
from notifications.channels import (
    ChannelConfigError,
    channel_url,
    quiet_until,
    rules_of,
    sync_env_channels,
)
from notifications.messages import clock, label, position_facts, render
from notifications.models import (
    SEVERITY_RANK,
    Delivery,
    DeliveryAttempt,
    DeliveryClock,
    DeliveryState,
    Notification,
    NotificationChannel,
)
from risk.models import AlertSeverity
from tradingsite.live_config import NotificationsConfig, site_config

log = logging.getLogger(__name__)

Sender = Callable[..., transport.SendResult]
ROUTE_BATCH = 500
SENDS_PER_CHANNEL = 50  # per pass; the rest goes on in the next one
LEASE = timedelta(minutes=5)
DIGEST_LINES = 25
ADVISORY_LOCK_KEY = 7_410_019
State = DeliveryState


def config() -> NotificationsConfig:
    return site_config().notifications


def backoff(failures: int, cfg: NotificationsConfig) -> timedelta:
    """1 s, 2 s, 4 s … at most ``retryMaxDelaySeconds`` after the n-th failure in a row."""
    seconds = cfg.retry_first_delay_seconds * 2 ** min(max(failures - 1, 0), 40)
    return timedelta(seconds=min(seconds, cfg.retry_max_delay_seconds))


def rate_of(channel: NotificationChannel, cfg: NotificationsConfig) -> tuple[int, timedelta]:
    return (channel.rate_limit_messages or cfg.rate_limit_messages,
            timedelta(seconds=channel.rate_limit_seconds or cfg.rate_limit_seconds))


@dataclass
class PassResult:
    routed: int = 0
    sent: int = 0
    failed_attempts: int = 0
    folded: int = 0
    held: int = 0
    digests: int = 0
    given_up: int = 0
    next_due: datetime | None = None
    channels: list[str] = field(default_factory=list)

    def due(self, moment: datetime | None) -> None:
        if moment is not None and (self.next_due is None or moment < self.next_due):
            self.next_due = moment


def deliver_pass(*, send: Sender = transport.send, deadline: float | None = None
                 ) -> PassResult:
    """Route what is new, then serve every channel that has something due."""
    result = PassResult()
    try:
        sync_env_channels()
    except ChannelConfigError as exc:  # start-up checks refuse this; edited since?
        log.error("NOTIFY_URLS: %s; its channels are not updated", exc)
    while routed := route_new():
        result.routed += routed
    for channel in NotificationChannel.objects.filter(enabled=True).order_by("pk"):
        if deadline is not None and time.monotonic() > deadline:
            result.due(timezone.now())
            break
        serve_channel(channel, result, send=send, deadline=deadline)
    give_up_disabled(result)
    if Notification.objects.filter(routed_at__isnull=True).exists():
        result.due(timezone.now())
    return result


# --- 1. route ----------------------------------------------------------------------------

def route_new(limit: int = ROUTE_BATCH) -> int:
    """Render and route up to ``limit`` new notifications; how many were routed."""
    cfg = config()
    window = timedelta(seconds=cfg.dedup_window_seconds)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        batch = list(Notification.objects.filter(routed_at__isnull=True).order_by("id")[:limit])
        if not batch:
            return 0
        now = timezone.now()
        channels = list(NotificationChannel.objects.filter(enabled=True).order_by("pk"))
        rules = {c.pk: rules_of(c) for c in channels}
        facts = position_facts({n.position_id for n in batch if n.position_id}, now)
        leads = _recent_leads(batch, window)
        deliveries = []
        for n in batch:
            n.title, n.body, n.link = render(n, facts.get(n.position_id))
            n.routed_at = now
            if n.channel_id is not None:  # a digest or a test: its channel only
                targets, folded = [n.channel_id], False
            else:
                targets = [c.pk for c in channels if rules[c.pk].accepts(n.kind, n.severity)]
                lead = leads.get(n.dedupe_key)
                folded = lead is not None and n.created_at - lead[1] < window
                if folded:
                    n.duplicate_of_id = lead[0]
                else:
                    leads[n.dedupe_key] = (n.pk, n.created_at)
            deliveries += [Delivery(
                notification=n, channel_id=channel_id, severity=n.severity,
                state=State.FOLDED if folded else State.PENDING,
                next_attempt_at=None if folded else now, folded_at=now if folded else None,
                created_at=now) for channel_id in targets]
        Notification.objects.bulk_update(batch, ["title", "body", "link", "routed_at",
                                                 "duplicate_of"], batch_size=500)
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True, batch_size=1000)
    return len(batch)


def _recent_leads(batch: list[Notification], window: timedelta
                  ) -> dict[str, tuple[int, datetime]]:
    """The latest routed, unfolded notification per dedupe key within the window."""
    keys = {n.dedupe_key for n in batch if n.channel_id is None}
    if not keys:
        return {}
    since = min(n.created_at for n in batch) - window
    leads: dict[str, tuple[int, datetime]] = {}
    for key, pk, created in (Notification.objects.filter(
            dedupe_key__in=keys, duplicate_of__isnull=True, routed_at__isnull=False,
            channel__isnull=True, created_at__gte=since)
            .order_by("created_at", "id").values_list("dedupe_key", "id", "created_at")):
        leads[key] = (pk, created)
    return leads


# --- 2. send -------------------------------------------------------------------------------

def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def take_lease(channel: NotificationChannel) -> bool:
    now = timezone.now()
    return NotificationChannel.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=channel.pk).update(
        lease_holder=_holder()[:150], lease_until=now + LEASE) == 1


def release_lease(channel: NotificationChannel) -> None:
    NotificationChannel.objects.filter(pk=channel.pk, lease_holder=_holder()[:150]).update(
        lease_holder="", lease_until=None)


def serve_channel(channel: NotificationChannel, result: PassResult, *,
                  send: Sender = transport.send, deadline: float | None = None) -> None:
    """Send what is due on one channel, if no other pass is at it; then its digest."""
    if not take_lease(channel):
        return
    try:
        channel.refresh_from_db()
        result.channels.append(channel.name)
        _serve(channel, result, send=send, deadline=deadline)
    finally:
        release_lease(channel)


def _serve(channel: NotificationChannel, result: PassResult, *, send: Sender,
           deadline: float | None) -> None:
    cfg = config()
    now = timezone.now()
    if channel.retry_at and channel.retry_at > now:  # paused after a failure
        result.due(channel.retry_at)
        return
    limit, window = rate_of(channel, cfg)
    sent_recently = Delivery.objects.filter(channel=channel, state=State.SENT,
                                            sent_at__gt=now - window).count()
    for _ in range(2):  # the messages due, then the digest that may have fallen due
        due = list(Delivery.objects.filter(channel=channel, state__in=State.waiting(),
                                           next_attempt_at__lte=now)
                   .select_related("notification").order_by("id")[:SENDS_PER_CHANNEL])
        for delivery in due:
            if deadline is not None and time.monotonic() > deadline:
                result.due(now)
                return
            outcome = _deliver_one(channel, delivery, cfg, now, limit, sent_recently, send,
                                   deadline)
            if outcome == "sent":
                result.sent += 1
                sent_recently += 1
            elif outcome == "failed":
                result.failed_attempts += 1
                result.due(channel.retry_at)
                return  # the channel pauses; the rest waits, in order
            else:
                setattr(result, outcome, getattr(result, outcome) + 1)
            now = timezone.now()
        if len(due) == SENDS_PER_CHANNEL:
            result.due(now)
        if not flush_digest(channel, cfg, now, window, result):
            break
    upcoming = Delivery.objects.filter(channel=channel, state__in=State.waiting()).aggregate(
        at=Min("next_attempt_at"))["at"]
    result.due(upcoming)


def _deliver_one(channel: NotificationChannel, delivery: Delivery, cfg: NotificationsConfig,
                 now: datetime, limit: int, sent_recently: int, send: Sender,
                 deadline: float | None = None) -> str:
    """Send, hold, fold or give up one delivery; what happened.

    With a ``deadline`` (the platform stopping) the send itself ends by then too.
    """
    notification = delivery.notification
    if now - notification.created_at > timedelta(hours=cfg.give_up_after_hours):
        _finish(delivery, State.FAILED, last_error=(
            f"not delivered within {cfg.give_up_after_hours:g} h"
            + (f"; last error: {delivery.last_error}" if delivery.last_error else "")))
        return "given_up"
    critical = delivery.severity == AlertSeverity.CRITICAL
    quiet_end = quiet_until(channel.quiet_start, channel.quiet_end, now)
    if quiet_end is not None and not critical:
        _finish(delivery, State.HELD, next_attempt_at=quiet_end)
        return "held"
    is_digest = notification.kind == "digest" and notification.channel_id == channel.pk
    if not is_digest and sent_recently >= limit:
        _finish(delivery, State.FOLDED, folded_at=now, next_attempt_at=None)
        return "folded"
    try:
        url = channel_url(channel)
    except ChannelConfigError as exc:
        outcome = transport.SendResult(ok=False, detail=f"channel not usable: {exc}",
                                       duration_ms=0)
        secrets: tuple[str, ...] = ()
    else:
        secrets = url.secrets
        bound = {} if deadline is None else {
            "timeout": max(1.0, min(transport.SEND_TIMEOUT_SECONDS, deadline - time.monotonic()))}
        outcome = send(url.url, title=notification.title, body=notification.body,
                       severity=delivery.severity, secrets=secrets, **bound)
    detail = transport.mask(outcome.detail, secrets)
    at = timezone.now()
    DeliveryAttempt.objects.create(delivery=delivery, at=at, ok=outcome.ok,
                                   duration_ms=outcome.duration_ms, detail=detail)
    if outcome.ok:
        _finish(delivery, State.SENT, sent_at=at, attempts=delivery.attempts + 1,
                next_attempt_at=None)
        NotificationChannel.objects.filter(pk=channel.pk).update(
            failures=0, retry_at=None, last_sent_at=at)
        channel.failures, channel.retry_at = 0, None
        return "sent"
    attempts = delivery.attempts + 1
    channel.failures += 1
    channel.retry_at = at + backoff(channel.failures, cfg)
    _finish(delivery, State.PENDING, attempts=attempts, last_error=detail,
            next_attempt_at=at + backoff(attempts, cfg))
    NotificationChannel.objects.filter(pk=channel.pk).update(
        failures=channel.failures, retry_at=channel.retry_at, last_failed_at=at,
        last_error=detail)
    log.warning("notification %s to channel %s not delivered (attempt %d, retry at %s): %s",
                notification.pk, channel.name, attempts, clock(channel.retry_at), detail)
    return "failed"


def _finish(delivery: Delivery, state: str, **values: object) -> None:
    """Write a delivery's new state; only while it is still waiting (compare-and-set)."""
    values["state"] = state
    Delivery.objects.filter(pk=delivery.pk, state__in=State.waiting()).update(
        updated_at=timezone.now(), **values)
    for name, value in values.items():
        setattr(delivery, name, value)


# --- 3. digest -----------------------------------------------------------------------------

def flush_digest(channel: NotificationChannel, cfg: NotificationsConfig, now: datetime,
                 window: timedelta, result: PassResult) -> bool:
    """One message for what was folded on this channel, a window after the first fold.

    True when a digest was created (it is due at once).
    """
    folded = Delivery.objects.filter(channel=channel, state=State.FOLDED, digest__isnull=True)
    first = folded.aggregate(at=Min("folded_at"))["at"]
    if first is None:
        return False
    if now - first < window:
        result.due(first + window)
        return False
    with transaction.atomic():
        rows = list(folded.select_for_update().select_related("notification").order_by("id"))
        if not rows:
            return False
        severity = max((d.severity for d in rows), key=SEVERITY_RANK.__getitem__)
        title, body = digest_text(rows, since=first)
        digest = Notification.objects.create(
            kind="digest", severity=severity, channel=channel, title=title[:250], body=body,
            dedupe_key=f"digest:channel:{channel.pk}", routed_at=now, created_at=now,
            context={"folded": len(rows), "first_folded_at": first.isoformat()})
        Delivery.objects.create(notification=digest, channel=channel, severity=severity,
                                state=State.PENDING, next_attempt_at=now, created_at=now)
        Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(digest=digest)
    result.digests += 1
    return True


def digest_text(rows: list[Delivery], *, since: datetime) -> tuple[str, str]:
    """Title and body listing folded messages, grouped by kind and object, worst first."""
    groups: dict[str, list[Notification]] = defaultdict(list)
    for delivery in rows:
        groups[delivery.notification.dedupe_key].append(delivery.notification)
    severities = Counter(d.severity for d in rows)
    ordered = sorted(groups.values(), key=lambda ns: (
        -max(SEVERITY_RANK[n.severity] for n in ns), -len(ns), ns[0].pk))
    lines = []
    for notifications in ordered[:DIGEST_LINES]:
        last = notifications[-1]
        times = f" ×{len(notifications)}" if len(notifications) > 1 else ""
        headline = last.body.split("\n", 1)[0] if last.body else label(last.kind)
        lines.append(f"• [{last.severity}] {last.title.split(': ', 1)[-1]}{times}, last at "
                     f"{clock(last.created_at)}: {headline}"
                     + (f" {last.link}" if last.link else ""))
    if len(ordered) > DIGEST_LINES:
        rest = sum(len(ns) for ns in ordered[DIGEST_LINES:])
        lines.append(f"… and {rest} more in {len(ordered) - DIGEST_LINES} other groups "
                     "(admin: Notifications).")
    counts = ", ".join(f"{severities[s]} {s}" for s in ("CRITICAL", "WARNING", "INFO")
                       if severities[s])
    title = f"Digest: {len(rows)} messages held back since {clock(since)} ({counts})"
    intro = ("Repeats and messages past this channel's rate limit, folded into one message "
             "instead of being sent one by one:")
    return title, "\n".join([intro, *lines])


# --- housekeeping -------------------------------------------------------------------------

def give_up_disabled(result: PassResult) -> None:
    """A disabled channel sends nothing: its waiting deliveries end failed, saying why."""
    count = Delivery.objects.filter(channel__enabled=False, state__in=State.waiting()).update(
        state=State.FAILED, last_error="channel disabled", updated_at=timezone.now())
    result.given_up += count


def prune(*, now: datetime | None = None) -> int:
    """Delete notifications older than ``retentionDays`` (their deliveries and attempts too)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=config().retention_days)
    old = Notification.objects.filter(created_at__lt=cutoff)
    # Digests point at what they folded; delete the newest last so nothing dangles.
    return old.delete()[0]


def request_pass_at(moment: datetime) -> bool:
    """Schedule one delivery pass at ``moment`` unless one is already due by then.

    A single row (``DeliveryClock``) holds the earliest wake-up asked for, so the many
    passes that end together schedule one follow-up, not one each. True if scheduled.
    """
    from notifications.tasks import deliver_notifications

    now = timezone.now()
    DeliveryClock.objects.get_or_create(pk=1)
    moved = DeliveryClock.objects.filter(
        Q(wake_at__isnull=True) | Q(wake_at__lte=now) | Q(wake_at__gt=moment), pk=1).update(
        wake_at=moment)
    if not moved:
        return False
    deliver_notifications.apply_async(countdown=max(0.0, (moment - now).total_seconds()))
    return True


# --- a test message --------------------------------------------------------------------------

@dataclass(frozen=True)
class TestOutcome:
    channel: str
    ok: bool
    detail: str


def send_test(*, channel_name: str | None = None, actor: str = "operator",
              send: Sender = transport.send) -> list[TestOutcome]:
    """Send a test message to every enabled channel (or the one named) now, and log it.

    No routing, rate limit or quiet hours: the point is to see each channel answer.
    ``LookupError`` when no channel matches.
    """
    sync_env_channels()
    channels = NotificationChannel.objects.order_by("name")
    channels = channels.filter(name=channel_name) if channel_name else channels.filter(
        enabled=True)
    outcomes = []
    for channel in channels:
        now = timezone.now()
        title = f"Test message from the trading platform ({channel.name})"
        body = (f"Sent by {actor} at {clock(now)} to check the channel {channel.name}. "
                "Alerts, timeouts, closes and platform start/stop arrive here as configured.")
        with transaction.atomic():
            notification = Notification.objects.create(
                kind="test", severity=AlertSeverity.INFO, channel=channel, title=title,
                body=body, dedupe_key=f"test:channel:{channel.pk}", routed_at=now,
                created_at=now, context={"actor": actor})
            delivery = Delivery.objects.create(notification=notification, channel=channel,
                                               severity=AlertSeverity.INFO, created_at=now,
                                               next_attempt_at=now)
        try:
            url = channel_url(channel)
        except ChannelConfigError as exc:
            result = transport.SendResult(ok=False, detail=f"channel not usable: {exc}",
                                          duration_ms=0)
            secrets: tuple[str, ...] = ()
        else:
            secrets = url.secrets
            result = send(url.url, title=title, body=body, severity=AlertSeverity.INFO,
                          secrets=secrets)
        detail = transport.mask(result.detail, secrets)
        at = timezone.now()
        DeliveryAttempt.objects.create(delivery=delivery, at=at, ok=result.ok,
                                       duration_ms=result.duration_ms, detail=detail)
        if result.ok:
            _finish(delivery, State.SENT, sent_at=at, attempts=1, next_attempt_at=None)
        else:  # a test is not retried: the operator is looking at the answer now
            _finish(delivery, State.FAILED, attempts=1, last_error=detail, next_attempt_at=None)
        outcomes.append(TestOutcome(channel.name, result.ok, detail))
    if not outcomes:
        raise LookupError(f"no channel named {channel_name!r}" if channel_name else
                          "no enabled channel: set NOTIFY_URLS or add one in the admin")
    return outcomes
