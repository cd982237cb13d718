"""Risk beat tasks: thin wrappers around ``risk.services``."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from risk import services
from tradingsite.schedule import PeriodicSpec

PERIODIC_TASKS = [
    PeriodicSpec("risk: check risk", "risk.tasks.check_risk", 30,
                 "Score open positions of strategies whose check interval has elapsed."),
    PeriodicSpec("risk: prune snapshots", "risk.tasks.prune_snapshots", 3600,
                 "Delete health snapshots older than the retention."),
]


@shared_task(acks_late=True)
def check_risk() -> dict[str, Any]:
    """Runs every 30 s; each strategy is scored once per ``checkIntervalCandles`` candles."""
    return services.risk_check_run().as_dict()


@shared_task(acks_late=True)
def prune_snapshots() -> int:
    return services.snapshots_prune()
