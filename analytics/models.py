"""Cached performance reports, refreshed every ``metricsInterval`` closed trades."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class MetricSnapshot(models.Model):
    """A computed performance report for one period and filter set."""

    period = models.CharField(max_length=16)
    scope = models.CharField(max_length=128, default="all",
                             help_text="The filter set: 'all' or e.g. 'strategy=trend-5m'.")
    computed_at = models.DateTimeField(default=timezone.now)
    trade_count = models.PositiveIntegerField(default=0)
    last_trade_id = models.BigIntegerField(null=True, blank=True)
    report = models.JSONField(default=dict)

    class Meta:
        ordering = ["-computed_at"]
        constraints = [models.UniqueConstraint(fields=["period", "scope"],
                                               name="metric_snapshot_unique_scope")]

    def __str__(self) -> str:
        return f"{self.period} {self.scope} ({self.trade_count} trades @ {self.computed_at})"
