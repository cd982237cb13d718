"""The notification outbox: channels, messages, one delivery per message and channel, attempts.

A ``Notification`` is written in the same transaction as the event it reports (an alert,
a timeout, a close, an order that ended unfilled, the platform starting or stopping).
The delivery pass (``notifications.delivery``) renders it, routes it to the channels
whose rules match (a ``Delivery`` each), and sends through Apprise with retries; every
attempt is logged (``DeliveryAttempt``), nothing is deleted until the retention ends.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from risk.models import AlertSeverity

SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}


class ChannelSource(models.TextChoices):
    ADMIN = "admin", "Admin"
    ENV = "env", "NOTIFY_URLS"


class NotificationChannel(models.Model):
    """Where messages go: one Apprise URL with its routing, rate limit and quiet hours.

    Admin channels store their URL with secrets as ``{env:NOTIFY_…}`` placeholders;
    channels from ``NOTIFY_URLS`` store no URL at all (it is read from the environment
    when sending), so no secret is ever in the database.
    """

    name = models.CharField(max_length=64, unique=True)
    source = models.CharField(max_length=5, choices=ChannelSource.choices,
                              default=ChannelSource.ADMIN)
    url = models.CharField(
        max_length=2000, blank=True, default="",
        help_text="Apprise URL, e.g. tgram://{env:NOTIFY_TELEGRAM_TOKEN}/123456789. Secrets "
                  "only as {env:NOTIFY_…} placeholders (the variable must start with "
                  "NOTIFY_); a URL holding a token in clear is refused.")
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=8, choices=AlertSeverity.choices,
                                    default=AlertSeverity.INFO,
                                    help_text="Only messages of this severity or above.")
    kinds = models.CharField(
        max_length=500, blank=True, default="",
        help_text="Only these kinds (comma-separated, * and ? wildcards, e.g. danger_*, "
                  "position_timeout); empty: every kind.")
    exclude_kinds = models.CharField(max_length=500, blank=True, default="",
                                     help_text="Never these kinds (same form).")
    rate_limit_messages = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="At most this many messages per window; the excess goes into one digest. "
                  "Empty: liveTrading.notifications.rateLimitMessages.")
    rate_limit_seconds = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The window, in seconds. Empty: liveTrading.notifications.rateLimitSeconds.")
    quiet_start = models.TimeField(
        null=True, blank=True,
        help_text="Quiet hours (TIME_ZONE) hold everything but CRITICAL until they end.")
    quiet_end = models.TimeField(null=True, blank=True)
    # Delivery state (written by the delivery pass).
    failures = models.PositiveIntegerField(default=0, editable=False,
                                           help_text="Consecutive failed sends.")
    retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    lease_holder = models.CharField(max_length=150, blank=True, default="", editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(source__in=ChannelSource.values),
                                   name="channel_source_valid"),
            models.CheckConstraint(condition=Q(min_severity__in=AlertSeverity.values),
                                   name="channel_min_severity_valid"),
            models.CheckConstraint(condition=Q(source=ChannelSource.ENV) | ~Q(url=""),
                                   name="admin_channel_has_url"),
            models.CheckConstraint(
                condition=Q(quiet_start__isnull=True, quiet_end__isnull=True)
                | Q(quiet_start__isnull=False, quiet_end__isnull=False),
                name="channel_quiet_hours_complete"),
            models.CheckConstraint(
                condition=Q(rate_limit_messages__isnull=True)
                | Q(rate_limit_messages__gte=1, rate_limit_messages__lte=10_000),
                name="channel_rate_limit_messages_range"),
            models.CheckConstraint(
                condition=Q(rate_limit_seconds__isnull=True)
                | Q(rate_limit_seconds__gte=1, rate_limit_seconds__lte=86_400),
                name="channel_rate_limit_seconds_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from notifications.channels import channel_errors

        channel_errors(self)


class Notification(models.Model):
    """One event worth telling a trader; rendered and routed by the delivery pass."""

    kind = models.CharField(max_length=64)
    severity = models.CharField(max_length=8, choices=AlertSeverity.choices)
    dedupe_key = models.CharField(
        max_length=160, help_text="Kind and object: repeats within the window are folded.")
    position = models.ForeignKey("lifecycle.Position", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="notifications")
    context = models.JSONField(default=dict, blank=True,
                               help_text="The facts of the event when it happened.")
    created_at = models.DateTimeField(default=timezone.now)
    routed_at = models.DateTimeField(null=True, blank=True,
                                     help_text="When the message was rendered and routed.")
    title = models.CharField(max_length=250, blank=True, default="")
    body = models.TextField(blank=True, default="")
    link = models.CharField(max_length=500, blank=True, default="")
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="repeats",
        help_text="A repeat within the dedupe window: folded into a digest, not sent alone.")
    channel = models.ForeignKey(
        NotificationChannel, null=True, blank=True, on_delete=models.CASCADE,
        related_name="own_notifications",
        help_text="Only for this channel (a digest, a test message); empty: routed by rules.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(routed_at__isnull=True),
                         name="notification_unrouted_idx"),
            models.Index(fields=["dedupe_key", "-created_at"], name="notification_dedupe_idx"),
            models.Index(fields=["created_at"], name="notification_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(severity__in=AlertSeverity.values),
                                   name="notification_severity_valid"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.severity}] {self.kind}: {self.title or self.dedupe_key}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    HELD = "held", "Held (quiet hours)"
    SENT = "sent", "Sent"
    FOLDED = "folded", "Folded into a digest"
    FAILED = "failed", "Failed (given up)"

    @classmethod
    def waiting(cls) -> list[str]:
        return [cls.PENDING, cls.HELD]


class Delivery(models.Model):
    """A message on its way to one channel: its state and the attempts so far."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE,
                                     related_name="deliveries")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE,
                                related_name="deliveries")
    severity = models.CharField(max_length=8, choices=AlertSeverity.choices)
    state = models.CharField(max_length=7, choices=DeliveryState.choices,
                             default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    folded_at = models.DateTimeField(null=True, blank=True)
    digest = models.ForeignKey(Notification, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="folded_deliveries",
                               help_text="The digest that carried this message.")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["channel", "next_attempt_at"],
                         condition=Q(state__in=["pending", "held"]), name="delivery_due_idx"),
            models.Index(fields=["channel", "folded_at"],
                         condition=Q(state="folded", digest__isnull=True),
                         name="delivery_to_digest_idx"),
            models.Index(fields=["channel", "sent_at"], condition=Q(state="sent"),
                         name="delivery_sent_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["notification", "channel"],
                                    name="one_delivery_per_message_and_channel"),
            models.CheckConstraint(condition=Q(state__in=DeliveryState.values),
                                   name="delivery_state_valid"),
        ]

    def __str__(self) -> str:
        return f"notification {self.notification_id} → {self.channel_id}: {self.state}"


class DeliveryAttempt(models.Model):
    """One send of one delivery: what Apprise said (secrets masked)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    duration_ms = models.PositiveIntegerField(default=0)
    detail = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'failed'} @ {self.at:%Y-%m-%d %H:%M:%S}"


class DeliveryClock(models.Model):
    """One row: when the next delivery pass is already scheduled (so follow-ups coalesce)."""

    wake_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"next delivery pass at {self.wake_at or 'none scheduled'}"
