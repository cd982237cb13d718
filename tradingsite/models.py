"""Platform-wide state: the trading halt, state snapshots, reconciliation reports."""

from __future__ import annotations

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
