"""Execution services: driving orders, the action queue, cancels and the sweeps.

Entry points (Celery tasks, admin actions, API views, commands) call these. An
order is driven by a *driver*: ``run_inline`` loops over the pipeline's steps in
this thread (tests, benchmarks, scripts — with an injectable sleep), and the
Celery driver in ``execution.tasks`` runs one step and schedules the next with a
countdown, so a worker never sleeps.

Actions are idempotent and resumable from any step: processing claims the action
with a compare-and-set (pending → running) and a lease (``lease_holder``,
``lease_until`` = now + ``actionLeaseSeconds``). The close order's client id is
derived from the action (``close-<action id>``), so a redelivered task or a second
worker finds the order already recorded instead of placing another. A running
action whose lease ran out with no order of its own still active — its worker was
killed after the order's final write, or before its close order was recorded — is
taken over by the sweep within seconds and carried on from where it stopped (an
active order carries its action on by itself). Cancels are actions too: the request
is answered at once and the exchange work runs on the account's own queue.

What a close action does to its position is lifecycle's (``lifecycle.close_actions``,
reached through the ``close_action_run`` and ``close_action_settle`` hooks of
``execution.handlers``): the queue itself knows orders and actions only.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from execution import handlers
from execution.client_requests import client_request_answer, client_request_claim
from execution.exchanges import exchange_for
from execution.exchanges.base import Exchange
from execution.exchanges.errors import ExchangeError
from execution.models import (
    Action,
    ActionKind,
    ActionState,
    ClientRequestScope,
    Order,
    OrderStatus,
)
from execution.pipeline import (
    Next,
    lease_holder,
    order_begin_cancel,
    order_step,
    order_submit,
    plain,
)
from execution.selectors import (
    action_with_targets,
    actions_due,
    order_fresh,
    orders_overdue,
)
from tradingsite.errors import DomainError, InvalidStateTransition

log = logging.getLogger(__name__)

Driver = Callable[[Order], Order]



# --- driving orders --------------------------------------------------------------

def order_advance(order: Order, *, exchange: Exchange | None = None) -> Next:
    """One pipeline step; when an order ends, settle the actions waiting on it."""
    was_cancelling = order.status == OrderStatus.CANCELLING
    step = order_step(order, exchange=exchange)
    if step.done and step.order.is_final:
        order_actions_settle(step.order, cancelled=was_cancelling or step.order.timed_out)
    return step


def run_inline(*, exchange: Exchange | None = None,
               sleep: Callable[[float], None] = time.sleep, max_steps: int = 10_000) -> Driver:
    """A driver that runs an order to its end in this thread, sleeping between steps."""

    def drive(order: Order) -> Order:
        return orders_drive_until_final([order], exchange=exchange, sleep=sleep,
                                 max_steps=max_steps)[-1]

    return drive


def orders_drive_until_final(orders: Iterable[Order], *, exchange: Exchange | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      max_steps: int = 10_000) -> list[Order]:
    """Drive orders to their end in this thread, each step when it is due (earliest first).

    The first step of each order runs on the instance given, later ones on a fresh copy.
    Returns each chain's last order (a replacement carries on the chain of the order it
    replaces), in the order given.
    """
    last = list(orders)
    due = [(timezone.now(), index, False) for index in range(len(last))]
    for _ in range(max_steps):
        if not due:
            return last
        at, index, fresh = heapq.heappop(due)
        if fresh:
            sleep(max((at - timezone.now()).total_seconds(), 0.0))
        step = order_advance(order_fresh(last[index]) if fresh else last[index], exchange=exchange)
        last[index] = step.order
        if not step.done:
            heapq.heappush(due, (timezone.now() + timedelta(seconds=step.delay), index, True))
    raise RuntimeError(f"orders not final after {max_steps} steps: "
                       f"{[last[index].client_order_id for _, index, _ in due]}")


def order_place(*, drive: Driver, **fields: Any) -> Order:
    """Record an order (``pipeline.order_submit`` arguments) and hand it to ``drive``.

    The same path as an order a worker takes over: recorded, then its first step
    claims the attempt (a compare-and-set with a lease) and sends it.
    """
    return drive(order_submit(**fields))


def order_request(*, caller: AbstractBaseUser, strategy: Any,
                  idempotency_key: str | None = None, **fields: Any) -> tuple[Order, bool]:
    """A caller's entry order: recorded now, sent by the workers; ``(order, created)``.

    With the caller's idempotency key a retry (the 202 was lost) gets the order the
    first request recorded, ``created`` False, and nothing new is placed; the same
    key with different order fields is a ``RequestMismatch`` naming them. The key is
    claimed in the order's own transaction: a refused order (halt) leaves it free.
    """
    from execution.tasks import schedule_next

    with transaction.atomic():
        record = None
        if idempotency_key:
            record, fresh = client_request_claim(
                caller=caller, scope=ClientRequestScope.ORDER, key=idempotency_key,
                request={"strategy": strategy.name, **fields})
            if not fresh:
                return record.order, False
        order = order_submit(account=strategy.account, strategy=strategy, **fields)
        if record is not None:
            client_request_answer(record, order=order)
        transaction.on_commit(lambda: schedule_next(Next(order, 0.0, "placed by API")))
    return order, True


# --- cancelling --------------------------------------------------------------------

def order_cancel(order: Order, *, actor: str, exchange: Exchange | None = None) -> Order:
    """Cancel an active order now, in this thread, and verify the outcome with the exchange.

    The exchange decides: a fill that happened meanwhile is applied and the order
    may end FILLED. If the exchange has not confirmed yet, the order stays
    CANCELLING and the timeout sweep finishes the verification. For scripts and tests:
    operators queue the cancel as an action (``order_request_cancel``), whose exchange
    work runs on the account's queue.
    """
    if order.is_final:
        raise InvalidStateTransition(f"order {order.client_order_id} is already {order.status}")
    order_begin_cancel(order, reason=f"cancel requested by {actor}")
    order_advance(order, exchange=exchange)
    return order


def order_request_cancel(order: Order, *, actor: str) -> tuple[Action, bool]:
    """Queue a cancel of ``order`` (one open cancel action per order); nothing is sent here."""
    if order.is_final:
        raise InvalidStateTransition(f"order {order.client_order_id} is already {order.status}")
    action, created = Action.objects.get_or_create(
        idempotency_key=f"cancel:{order.pk}",
        defaults={"kind": ActionKind.CANCEL_ORDER, "order": order, "requested_by": actor[:150]})
    if created:
        action_dispatch(action)
    return action, created


# --- the action queue ------------------------------------------------------------

def action_dispatch(action: Action) -> None:
    """Hand an action to the worker once the transaction that created it commits."""
    actions_dispatch([action.pk])


# Above this many actions, dispatching is itself handed to workers in batches.
DIRECT_DISPATCH_LIMIT = 100
FAN_OUT_BATCH_SIZE = 500


def actions_dispatch(action_ids: list[int]) -> None:
    """Hand actions to the workers once the transaction that created them commits.

    Up to ``DIRECT_DISPATCH_LIMIT`` go out as one ``process_action`` message each;
    a mass timeout sends one ``actions_dispatch`` message per batch (registered as
    ``lifecycle.tasks.dispatch_actions``, its name before the task moved here)
    instead, so the pass that created them stays fast and the fan-out runs in
    parallel on the workers. Pending actions that no message reaches are picked
    up by ``execution.tasks.sweep_actions``.
    """
    if not action_ids:
        return
    ids = list(action_ids)

    def send() -> None:
        if len(ids) <= DIRECT_DISPATCH_LIMIT:
            actions_send_now(ids)
            return
        from execution.tasks import dispatch_actions

        for start in range(0, len(ids), FAN_OUT_BATCH_SIZE):
            batch = ids[start:start + FAN_OUT_BATCH_SIZE]
            dispatch_actions.apply_async((batch,), argsrepr=f"[{len(batch)} action ids]")

    transaction.on_commit(send)


def actions_send_now(action_ids: list[int]) -> None:
    """One ``process_action`` message per action (the task is idempotent)."""
    from execution.tasks import process_action

    for action_id in action_ids:
        process_action.delay(action_id)


def _lease_seconds(action: Action) -> float:
    """``actionLeaseSeconds`` of the strategy the action works for (site config without one)."""
    return handlers.action_config(action).action_lease_seconds


def action_claim(action_id: int) -> Action | None:
    """pending → running with a lease (compare-and-set); ``None`` when another worker has it."""
    action = action_with_targets(action_id)
    if action is None or action.state != ActionState.PENDING:
        return None
    now = timezone.now()
    until = now + timedelta(seconds=_lease_seconds(action))
    claimed = Action.objects.filter(pk=action_id, state=ActionState.PENDING).update(
        state=ActionState.RUNNING, started_at=now, attempts=F("attempts") + 1,
        lease_holder=lease_holder(), lease_until=until, updated_at=now)
    if not claimed:
        return None
    action.state, action.started_at, action.attempts = ActionState.RUNNING, now, action.attempts + 1
    action.lease_holder, action.lease_until = lease_holder(), until
    return action


def action_take_over(action: Action) -> Action | None:
    """Take over a running action whose lease ran out: its worker went silent."""
    now = timezone.now()
    until = now + timedelta(seconds=_lease_seconds(action))
    claimed = Action.objects.filter(pk=action.pk, state=ActionState.RUNNING,
                                    lease_until=action.lease_until).update(
        started_at=now, attempts=F("attempts") + 1, lease_holder=lease_holder(),
        lease_until=until, updated_at=now)
    if not claimed:
        return None
    return action_with_targets(action.pk)


def action_process(action_id: int, *, drive: Driver, exchange: Exchange | None = None
                   ) -> Action:
    """Run one action if this worker can claim it; otherwise leave it to its owner."""
    action = action_claim(action_id)
    if action is None:
        return Action.objects.get(pk=action_id)
    return action_run(action, drive=drive, exchange=exchange)


def action_run(action: Action, *, drive: Driver, exchange: Exchange | None = None) -> Action:
    """Do the work of a claimed (running) action; any failure is recorded on it."""
    try:
        if action.kind in ActionKind.closing():
            handlers.close_action_run(action, drive)
        else:
            _run_cancel(action, drive)
    except (DomainError, ExchangeError) as exc:
        log.warning("action %s failed: %s", action.pk, exc)
        action_finish(action, ActionState.FAILED, error=str(exc))
    action.refresh_from_db()
    return action


def _run_cancel(action: Action, drive: Driver) -> None:
    """Mark the order for cancelling; the cancel and its read-back run on its account's queue."""
    order = Order.objects.select_related("account", "strategy", "position", "action").get(
        pk=action.order_id)
    if order.is_final or not order_begin_cancel(order, reason=f"cancel requested by "
                                                              f"{action.requested_by}"):
        action_finish(action, ActionState.DONE, result=order_result(order))
        return
    drive(order)


def order_actions_settle(order: Order, *, cancelled: bool = True) -> None:
    """A final order settles its close action and, if it was being cancelled, its cancels."""
    if order.action_id:
        handlers.close_action_settle(order)
    if cancelled:
        for action in Action.objects.filter(order=order, kind=ActionKind.CANCEL_ORDER,
                                            state__in=ActionState.open()):
            action_finish(action, ActionState.DONE, result=order_result(order))


def action_wait_until(action: Action, until: datetime) -> bool:
    """A running action waits for something outside (a bot's confirmation) until ``until``.

    Its lease is moved there: the sweep takes it over and runs it again then, unless
    it finished meanwhile. False when the action is no longer running.
    """
    moved = Action.objects.filter(pk=action.pk, state=ActionState.RUNNING).update(
        lease_until=until, updated_at=timezone.now())
    if moved:
        action.lease_until = until
    return bool(moved)


def action_finish(action: Action, state: str, *, result: dict | None = None,
                   error: str = "") -> bool:
    """running → done/failed (compare-and-set); False if it was already finished."""
    now = timezone.now()
    changed = Action.objects.filter(pk=action.pk, state__in=ActionState.open()).update(
        state=state, result=result or {}, error=error, finished_at=now, lease_until=None,
        updated_at=now)
    if changed:
        action.state, action.result, action.error, action.finished_at = (
            state, result or {}, error, now)
    return bool(changed)


def order_result(order: Order) -> dict[str, Any]:
    def text(value):
        return plain(value) if value is not None else None

    return {"order": order.client_order_id, "status": order.status,
            "filled": plain(order.filled_quantity),
            "average_price": text(order.average_fill_price),
            "slippage_percent": text(order.slippage_percent)}


# --- sweeps ------------------------------------------------------------------------


def actions_sweep(*, drive: Driver, now=None) -> int:
    """Process due actions; returns how many this worker took."""
    taken = 0
    for action in actions_due(now):
        claimed = (action_claim(action.pk) if action.state == ActionState.PENDING
                   else action_take_over(action))
        if claimed is None:
            continue
        taken += 1
        action_run(claimed, drive=drive)
    return taken


def orders_expire_overdue(*, schedule: Callable[[Next], None], now=None,
                          account_id: int | None = None,
                          exchange_of: Callable[[Any], Exchange] = exchange_for) -> int:
    """The timeout sweep: one step for each overdue order (cancel → verify → replace).

    Runs on the account's queue (``account_id``) so that a hung exchange holds up
    only its own account. A replacement order starts its own chain through ``schedule``.
    """
    handled = 0
    for order in orders_overdue(now, account_id=account_id):
        try:
            step = order_advance(order, exchange=exchange_of(order.account))
        except ExchangeError as exc:
            log.warning("timeout sweep: order %s: %s", order.client_order_id, exc)
            continue
        handled += 1
        if not step.done and step.order.pk != order.pk:
            schedule(step)
    return handled


