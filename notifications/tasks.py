"""Notification tasks: thin, idempotent (leases and compare-and-set in the service)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("notifications: deliver", "notifications.tasks.deliver_notifications", 10,
                 "Route new notifications, send what is due, retries and digests (the "
                 "commits that record notifications also start a pass at once)."),
    PeriodicSpec("notifications: prune", "notifications.tasks.prune_notifications", 3600,
                 "Delete notifications older than liveTrading.notifications.retentionDays."),
]


@shared_task(acks_late=True, ignore_result=True)
def deliver_notifications() -> dict[str, Any]:
    """One delivery pass; then one follow-up at the next retry, hold end or digest."""
    from notifications.delivery import deliver_pass, request_pass_at

    result = deliver_pass()
    if result.sent or result.failed_attempts or result.given_up:
        log.info("notifications: %d sent, %d failed attempts, %d folded, %d held, %d digests, "
                 "%d given up", result.sent, result.failed_attempts, result.folded,
                 result.held, result.digests, result.given_up)
    if result.next_due is not None:
        request_pass_at(result.next_due)
    return {"routed": result.routed, "sent": result.sent, "next_due": str(result.next_due)}


@shared_task(acks_late=True, ignore_result=True)
def prune_notifications() -> int:
    from notifications.delivery import prune

    return prune()
