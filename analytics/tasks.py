"""Analytics beat tasks."""

from __future__ import annotations

from celery import shared_task

from analytics import services
from tradingsite.schedule import PeriodicSpec

PERIODIC_TASKS = [
    PeriodicSpec("analytics: refresh reports", "analytics.tasks.refresh_reports", 60,
                 "Recompute cached performance reports after metricsInterval closed trades."),
]


@shared_task(acks_late=True)
def refresh_reports() -> int:
    """Idempotent: recomputes only the snapshots that are due."""
    return services.reports_refresh()
