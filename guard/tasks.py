"""Guard beat task: thin wrapper around ``guard.services``."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from guard import services
from tradingsite.schedule import PeriodicSpec

PERIODIC_TASKS = [
    PeriodicSpec("guard: evaluate equity and limits", "guard.tasks.evaluate", 5,
                 "Count each scope's positions and exposure, compute live equity, trip scopes "
                 "whose daily loss or drawdown reached its limit."),
]


@shared_task(acks_late=True)
def evaluate() -> dict[str, Any]:
    """Every 5 s: the trips and the gate's exact counts follow the book closely."""
    return services.guard_evaluate().as_dict()
