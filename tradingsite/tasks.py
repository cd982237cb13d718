"""Platform-level tasks (thin, acknowledged late)."""

from __future__ import annotations

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

PERIODIC_TASKS = [
    PeriodicSpec("platform: prune the live-event outbox", "tradingsite.tasks.prune_live_outbox",
                 60, "Delete live events no dashboard-serving process relayed within a minute."),
]


@shared_task(name="tradingsite.tasks.ping", ignore_result=True)
def ping(token: str) -> str:
    """Echo ``token``: proves that a message went through the broker and a worker ran it.

    ``runplatform`` sends one at start-up and waits for its own worker to answer.
    """
    return token


@shared_task(acks_late=True)
def reconcile_position(position_id: int) -> str:
    """Reconcile a position marked for attention with its exchange (on the account's queue)."""
    from tradingsite.recovery import position_reconcile

    return position_reconcile(position_id)


def dispatch_position_reconciles(sender: object = None, *, position_ids: list[int],
                                 **kwargs: object) -> None:
    """``positions_need_reconcile`` receiver: one task per position, on its account's queue."""
    from execution.tasks import queue_for
    from lifecycle.models import Position

    for position in Position.objects.filter(pk__in=position_ids).select_related(
            "strategy__account"):
        reconcile_position.apply_async((position.pk,), queue=queue_for(position.strategy.account))


@shared_task(acks_late=True)
def prune_live_outbox() -> int:
    """Idempotent: deletes outbox rows past their useful age."""
    from tradingsite.live_outbox import outbox_prune

    return outbox_prune()
