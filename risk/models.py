"""Health snapshots and risk alerts of open positions."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from lifecycle.models import DangerLevel

SCORE = {"max_digits": 6, "decimal_places": 2}


class HealthSnapshot(models.Model):
    """One health check of one position: the score, its five components, the level."""

    position = models.ForeignKey("lifecycle.Position", on_delete=models.CASCADE,
                                 related_name="health_snapshots")
    taken_at = models.DateTimeField(default=timezone.now)
    score = models.DecimalField(**SCORE)
    time_score = models.DecimalField(**SCORE)
    drawdown_score = models.DecimalField(**SCORE)
    volume_score = models.DecimalField(**SCORE)
    volatility_score = models.DecimalField(**SCORE)
    profitability_score = models.DecimalField(**SCORE)
    danger_level = models.CharField(max_length=8, choices=DangerLevel.choices)
    price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    data_complete = models.BooleanField(
        default=True, help_text="False when market data was missing and a component was "
                                "scored from a neutral default (lower confidence).")
    missing = models.JSONField(default=list, blank=True,
                               help_text="Inputs that were missing for this check.")

    class Meta:
        ordering = ["-taken_at"]
        get_latest_by = "taken_at"
        indexes = [
            models.Index(fields=["position", "-taken_at"], name="snapshot_position_time_idx"),
            models.Index(fields=["taken_at"], name="snapshot_time_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=0, score__lte=100),
                                   name="snapshot_score_range"),
            models.CheckConstraint(condition=Q(danger_level__in=DangerLevel.values),
                                   name="snapshot_danger_level_valid"),
        ]

    def __str__(self) -> str:
        return f"position {self.position_id} {self.score} {self.danger_level} @ {self.taken_at}"


class AlertSeverity(models.TextChoices):
    INFO = "INFO", "Info"
    WARNING = "WARNING", "Warning"
    CRITICAL = "CRITICAL", "Critical"


class RiskAlert(models.Model):
    """A risk condition on a position; one open alert per position and kind."""

    position = models.ForeignKey("lifecycle.Position", null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="alerts")
    severity = models.CharField(max_length=8, choices=AlertSeverity.choices)
    kind = models.CharField(max_length=64)
    subject = models.CharField(
        max_length=160, blank=True, default="",
        help_text="What an alert without a position is about (e.g. 'bybit-main BTC/USDT:USDT'); "
                  "one open alert per kind and subject.")
    message = models.TextField()
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    occurrences = models.PositiveIntegerField(default=1)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged = models.BooleanField(default=False)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["resolved_at", "-last_seen"], name="alert_open_idx")]
        constraints = [
            models.UniqueConstraint(fields=["position", "kind"],
                                    condition=Q(resolved_at__isnull=True),
                                    name="one_open_alert_per_position_kind"),
            models.CheckConstraint(condition=Q(severity__in=AlertSeverity.values),
                                   name="alert_severity_valid"),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.kind}: {self.message}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class StrategyRiskCheck(models.Model):
    """When a strategy's positions were last scored: the check runs every N candles of its timeframe.

    The row is also the lock that lets one worker at a time check a strategy
    (``select_for_update(skip_locked=True)``).
    """

    strategy = models.OneToOneField("lifecycle.Strategy", on_delete=models.CASCADE,
                                    primary_key=True, related_name="risk_check")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    positions_checked = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True,
                                              help_text="How long the last check took.")

    class Meta:
        ordering = ["strategy__name"]

    def __str__(self) -> str:
        return f"{self.strategy_id}: checked {self.last_checked_at or 'never'}"
