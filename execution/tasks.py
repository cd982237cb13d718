"""Execution beat tasks."""

from __future__ import annotations

import logging

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("execution: process actions", "execution.tasks.sweep_actions", 5,
                 "Run pending actions that no on-commit task picked up."),
    PeriodicSpec("execution: order timeouts", "execution.tasks.sweep_order_timeouts", 5,
                 "Cancel, verify and replace orders not final after orderTimeoutSeconds."),
]


@shared_task(acks_late=True)
def sweep_actions() -> None:
    log.info("sweep_actions: the action queue lands with the execution issue")


@shared_task(acks_late=True)
def sweep_order_timeouts() -> None:
    log.info("sweep_order_timeouts: order timeouts land with the execution issue")


@shared_task(acks_late=True)
def process_action(action_id: int) -> None:
    log.info("process_action %s: action processing lands with the execution issue", action_id)
