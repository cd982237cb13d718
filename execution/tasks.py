"""Execution Celery tasks: thin entry points over ``execution.services``.

Every task is acknowledged late and idempotent. An order is driven one step per
task run: after a step the next run is scheduled with ``countdown`` (a retry
backoff or a poll interval), never slept. Order work goes to the account's queue:
``ExchangeAccount.order_queue``, else ``settings.EXCHANGE_QUEUES[account name]``,
else the default queue (start a worker with ``-Q <queue>`` to serve one account).
That includes the order-timeout sweep (the beat task only finds the accounts with
overdue orders and hands each its own ``expire_overdue_orders``) and every cancel
and read-back: a hung exchange fills only its own queue.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from execution.market_data import candles_refresh_in_use
from execution.models import Action, ExchangeAccount, Order
from execution.pipeline import Next
from execution.selectors import accounts_with_overdue_orders
from execution.services import (
    action_process,
    actions_send_now,
    actions_sweep,
    order_advance,
    orders_expire_overdue,
)
from tradingsite.schedule import PeriodicSpec

log = logging.getLogger(__name__)

PERIODIC_TASKS = [
    PeriodicSpec("execution: process actions", "execution.tasks.sweep_actions", 5,
                 "Run pending actions that no on-commit task picked up."),
    PeriodicSpec("execution: order timeouts", "execution.tasks.sweep_order_timeouts", 5,
                 "Cancel, verify and replace orders not final after orderTimeoutSeconds."),
    PeriodicSpec("execution: refresh candles", "execution.tasks.refresh_candles", 60,
                 "Store the latest closed candles of every market a position is held in."),
]


def queue_for(account: ExchangeAccount) -> str | None:
    """The Celery queue of an account's order work (``None``: the default queue)."""
    return account.order_queue or settings.EXCHANGE_QUEUES.get(account.name) or None


def schedule_next(step: Next) -> None:
    """Run the order's next step later, on its account's queue."""
    drive_order.apply_async((step.order.pk,), countdown=step.delay,
                            queue=queue_for(step.order.account))


def drive_in_background(order: Order) -> Order:
    """Driver for workers: one step now, the rest scheduled with a countdown."""
    step = order_advance(order)
    if not step.done:
        schedule_next(step)
    return step.order


def drive_on_account_queue(order: Order) -> Order:
    """Driver for actions: exchange calls happen on the account's queue when it has one."""
    if queue_for(order.account) is None:
        return drive_in_background(order)
    schedule_next(Next(order, 0.0, "hand over to the account's queue"))
    return order


@shared_task(acks_late=True)
def drive_order(order_id: int) -> None:
    """One step of an order (placement attempt, status poll, cancel-and-verify)."""
    order = Order.objects.select_related("account", "strategy", "position", "action").filter(
        pk=order_id).first()
    if order is None:
        log.warning("drive_order: order %s does not exist", order_id)
        return
    drive_in_background(order)


@shared_task(acks_late=True)
def process_action(action_id: int) -> None:
    """Run an action from the queue (started on commit by whoever requested it)."""
    if not Action.objects.filter(pk=action_id).exists():
        log.warning("process_action: action %s does not exist", action_id)
        return
    action_process(action_id, drive=drive_on_account_queue)


@shared_task(name="lifecycle.tasks.dispatch_actions", acks_late=True)
def dispatch_actions(action_ids: list[int]) -> None:
    """Fan a batch of queued actions out to ``process_action`` (one message each).

    Registered under its name from when it lived in ``lifecycle.tasks``, so batches
    already queued under that name are still run.
    """
    actions_send_now(action_ids)


@shared_task(acks_late=True)
def sweep_actions() -> int:
    return actions_sweep(drive=drive_on_account_queue)


@shared_task(acks_late=True)
def sweep_order_timeouts() -> int:
    """Hand each account with overdue orders its own timeout sweep, on its own queue."""
    accounts = ExchangeAccount.objects.filter(pk__in=accounts_with_overdue_orders())
    for account in accounts:
        expire_overdue_orders.apply_async((account.pk,), queue=queue_for(account))
    return len(accounts)


@shared_task(acks_late=True)
def expire_overdue_orders(account_id: int) -> int:
    """Cancel, verify and replace one account's orders not final after their timeout."""
    return orders_expire_overdue(schedule=schedule_next, account_id=account_id)


@shared_task(acks_late=True)
def refresh_candles() -> dict:
    return candles_refresh_in_use()
