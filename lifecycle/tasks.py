"""Lifecycle beat tasks: thin, idempotent, safe to run on several workers at once."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("lifecycle: check timeouts", "lifecycle.tasks.check_timeouts", 15,
                 "Move positions to WARNING/CRITICAL by holding time; queue emergency closes."),
]


@shared_task(acks_late=True)
def check_timeouts() -> dict[str, Any]:
    """One timeout pass; a duplicate or concurrent run finds nothing left to do."""
    from lifecycle.services import timeout_pass_run

    result = timeout_pass_run()
    if result.warned or result.timed_out or result.close_actions:
        log.info("timeout pass: %d warned, %d timed out, %d close actions queued",
                 result.warned, result.timed_out, result.close_actions)
    return result.as_dict()
