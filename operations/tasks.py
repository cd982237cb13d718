"""Platform-level tasks (thin, acknowledged late).

They keep the names they were registered under in ``tradingsite.tasks`` (``name=``), so
messages already queued under those names still find them.
"""

from __future__ import annotations

from celery import shared_task

from tradingsite.schedule import PeriodicSpec

PERIODIC_TASKS = [
    PeriodicSpec("platform: check invariants", "operations.tasks.check_invariants", 60,
                 "Check the platform's promises against the exchanges; alert "
                 "invariant_violated with the evidence."),
]


@shared_task(name="tradingsite.tasks.ping", ignore_result=True)
def ping(token: str) -> str:
    """Echo ``token``: proves that a message went through the broker and a worker ran it.

    ``runplatform`` sends one at start-up and waits for its own worker to answer.
    """
    return token


@shared_task(name="tradingsite.tasks.reconcile_position", acks_late=True)
def reconcile_position(position_id: int) -> str:
    """Reconcile a position marked for attention with its exchange (on the account's queue)."""
    from operations.recovery import position_reconcile

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
def check_invariants() -> dict[str, int]:
    """Every minute: check the promises and raise, keep or resolve their alerts."""
    from operations.invariants import check_and_alert

    return check_and_alert().as_dict()
