"""Risk beat tasks."""

from __future__ import annotations

import logging

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("risk: check risk", "risk.tasks.check_risk", 30,
                 "Score open positions of strategies whose check interval has elapsed."),
    PeriodicSpec("risk: prune snapshots", "risk.tasks.prune_snapshots", 3600,
                 "Delete health snapshots older than the retention."),
]


@shared_task(acks_late=True)
def check_risk() -> None:
    log.info("check_risk: scoring lands with the risk issue")


@shared_task(acks_late=True)
def prune_snapshots() -> None:
    log.info("prune_snapshots: retention lands with the risk issue")
