"""Lifecycle beat tasks."""

from __future__ import annotations

import logging

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("lifecycle: check timeouts", "lifecycle.tasks.check_timeouts", 15,
                 "Move positions to WARNING/CRITICAL by holding time; queue emergency closes."),
]


@shared_task(acks_late=True)
def check_timeouts() -> None:
    log.info("check_timeouts: the timeout pass lands with the lifecycle issue")
