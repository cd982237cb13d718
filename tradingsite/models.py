"""Platform-wide state: the trading halt, state snapshots, reconciliation reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class PlatformState(models.Model):
    """A single row: whether new entries are halted, and whether a shutdown was asked for."""

    SINGLETON_ID = 1

    trading_halted = models.BooleanField(default=False)
    halt_reason = models.CharField(max_length=255, blank=True, default="")
    halted_at = models.DateTimeField(null=True, blank=True)
    halted_by = models.CharField(max_length=150, blank=True, default="")
    shutdown_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by `shutdown_platform`; running instances stop.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "platform state"
        verbose_name_plural = "platform state"
        constraints = [models.CheckConstraint(condition=models.Q(id=1),
                                              name="platform_state_singleton")]

    def __str__(self) -> str:
        return f"trading {'HALTED: ' + self.halt_reason if self.trading_halted else 'active'}"


class StateSnapshot(models.Model):
    """What was open when the platform stopped (also written as JSON under STATE_DIR)."""

    created_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=32, default="shutdown")
    clean = models.BooleanField(default=True, help_text="False when the shutdown timed out.")
    unfinished = models.JSONField(default=list, blank=True)
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"{self.reason} snapshot @ {self.created_at:%Y-%m-%d %H:%M:%S}"


class ReconciliationReport(models.Model):
    """The outcome of comparing the database with the exchange on start or on demand."""

    created_at = models.DateTimeField(default=timezone.now)
    dry_run = models.BooleanField(default=False)
    differences = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"reconciliation @ {self.created_at:%Y-%m-%d %H:%M:%S}: {self.differences} differences"


class AppendOnlyQuerySet(models.QuerySet):
    """Rows are only ever added: bulk updates and deletes are refused."""

    def update(self, **kwargs: object) -> int:
        raise AppendOnlyError(f"{self.model.__name__} rows are never updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{self.model.__name__} rows are never deleted")


class AppendOnlyError(RuntimeError):
    """An attempt to change or remove an audit row."""


class AuditEvent(models.Model):
    """The platform's append-only audit log: who did what, when, and what it was before and after.

    Written through ``tradingsite.audit.audit_record`` in the same transaction as the
    change it describes. Rows are never updated or deleted: the model and its queryset
    refuse, and on PostgreSQL a trigger refuses ``UPDATE`` and ``DELETE`` for every
    client (SQLite: ``UPDATE``). No foreign keys: deleting what a row talks about
    cannot remove the row.
    """

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    actor = models.CharField(max_length=150, help_text="Who: a user name, or the process "
                                                       "(e.g. 'cli', 'shutdown').")
    action = models.CharField(max_length=64, help_text="What, as noun.verb, e.g. "
                                                       "'exchange_account.update'.")
    target_type = models.CharField(max_length=100, blank=True, default="",
                                   help_text="app_label.model of the object changed.")
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(default=dict, blank=True, help_text="Changed fields before.")
    after = models.JSONField(default=dict, blank=True, help_text="Changed fields after.")
    reason = models.TextField(blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id", "created_at"],
                                name="audit_target_idx"),
                   models.Index(fields=["created_at"], name="audit_created_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor}: {self.action} {self.target_repr}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AppendOnlyError("AuditEvent rows are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("AuditEvent rows are never deleted")


class ApiToken(models.Model):
    """A user's API token (``Authorization: Token <key>``).

    The key is shown once, when it is issued (``tradingsite.tokens``); the database keeps
    only its SHA-256 digest and its first characters, which are all anyone sees after.
    """

    PREFIX_LENGTH = 8

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="api_token")
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class LiveEvent(models.Model):
    """A live event written by a process whose channel layer cannot reach the dashboards.

    The outbox of ``tradingsite.live``: a management command, a shell or a second
    process on the in-memory layer writes its events here, and the process serving the
    dashboards relays them to its channel layer (``tradingsite.live_relay``), deleting
    each row as it is sent. Rows are short-lived: an event older than
    ``live_relay.MAX_AGE_SECONDS`` is dropped unsent.
    """

    created_at = models.DateTimeField(default=timezone.now)
    event = models.CharField(max_length=64)
    payload = models.TextField(help_text="The event's payload as JSON text.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.event} @ {self.created_at:%Y-%m-%d %H:%M:%S}"
