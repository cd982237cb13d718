"""Cached performance reports and realised-PnL checkpoints."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone

from tradingsite.domain import MONEY


class MetricSnapshot(models.Model):
    """A computed performance report for one period and filter set.

    Refreshed by ``analytics.tasks.refresh_reports`` once ``metricsInterval`` trades
    have closed in its scope since it was computed, or when its calendar window moved.
    """

    period = models.CharField(max_length=16)
    scope = models.CharField(max_length=128, default="all",
                             help_text="The filter set: 'all' or e.g. 'strategy=trend-5m'.")
    window_start = models.DateTimeField(
        null=True, blank=True, help_text="Start of the calendar window the report covers.")
    computed_at = models.DateTimeField(default=timezone.now)
    trade_count = models.PositiveIntegerField(default=0)
    last_trade_id = models.BigIntegerField(
        null=True, blank=True,
        help_text="Highest trade id in scope when computed: later trades are 'new'.")
    report = models.JSONField(default=dict)

    class Meta:
        ordering = ["-computed_at"]
        constraints = [models.UniqueConstraint(fields=["period", "scope"],
                                               name="metric_snapshot_unique_scope")]

    def __str__(self) -> str:
        return f"{self.period} {self.scope} ({self.trade_count} trades @ {self.computed_at})"


class RealisedPnlCheckpoint(models.Model):
    """Realised PnL of a scope before a calendar period starts (the period's base equity).

    Summing the whole history before today costs a full scan; the sum only changes
    when a trade closed before ``before`` is created, changed or deleted, and those
    events delete the checkpoints they affect (see ``analytics.signals``).
    """

    scope = models.CharField(max_length=128)
    before = models.DateTimeField()
    realised_pnl = models.DecimalField(**MONEY, default=Decimal("0"))
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "-before"]
        constraints = [models.UniqueConstraint(fields=["scope", "before"],
                                               name="pnl_checkpoint_unique_scope_before")]
        indexes = [models.Index(fields=["before"], name="pnl_checkpoint_before_idx")]

    def __str__(self) -> str:
        return f"{self.scope} before {self.before:%Y-%m-%d %H:%M}: {self.realised_pnl}"
