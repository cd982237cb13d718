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
killed after the order's final write, or between ``position_begin_close`` and
``order_submit`` — is taken over by the sweep within seconds and carried on from
where it stopped (an active order carries its action on by itself).
Cancels are actions too: the request is answered at once and the exchange work
runs on the account's own queue.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from execution.client_requests import client_request_answer, client_request_claim
from execution.exchanges import exchange_for
from execution.exchanges.base import Exchange
from execution.exchanges.errors import ExchangeError
from execution.gates import OrderRefused, refusal_record
from execution.models import (
    Action,
    ActionKind,
    ActionState,
    ClientRequestScope,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
)
from execution.pipeline import (
    Next,
    lease_holder,
    order_begin_cancel,
    order_config,
    order_deadline,
    order_step,
    order_submit,
    plain,
)
from lifecycle.models import Position, PositionSide, PositionState, Strategy
from lifecycle.services import position_begin_close, position_close_failed
from tradingsite.audit import audit_record
from tradingsite.errors import DomainError, InvalidStateTransition
from tradingsite.live_config import site_config

log = logging.getLogger(__name__)

Driver = Callable[[Order], Order]

# A pending action no on-commit task picked up within this is run by the sweep.
ACTION_PICKUP_SECONDS = 5
# A running action whose order was written this recently is left to the worker that wrote it
# (it settles the action right after the order's final write).
ACTION_SETTLE_SECONDS = 5


# --- driving orders --------------------------------------------------------------

def order_advance(order: Order, *, exchange: Exchange | None = None) -> Next:
    """One pipeline step; when an order ends, settle the actions waiting on it."""
    was_cancelling = order.status == OrderStatus.CANCELLING
    step = order_step(order, exchange=exchange)
    if step.done and step.order.is_final:
        settle_order_actions(step.order, cancelled=was_cancelling or step.order.timed_out)
    return step


def run_inline(*, exchange: Exchange | None = None,
               sleep: Callable[[float], None] = time.sleep, max_steps: int = 10_000) -> Driver:
    """A driver that runs an order to its end in this thread, sleeping between steps."""

    def drive(order: Order) -> Order:
        return drive_until_final([order], exchange=exchange, sleep=sleep,
                                 max_steps=max_steps)[-1]

    return drive


def drive_until_final(orders: Iterable[Order], *, exchange: Exchange | None = None,
                      sleep: Callable[[float], None] = time.sleep,
                      max_steps: int = 10_000) -> list[Order]:
    """Drive orders to their end in this thread, each step when it is due (earliest first).

    The first step of each order runs on the instance given (it may carry an insert
    claim), later ones on a fresh copy. Returns each chain's last order (a replacement
    carries on the chain of the order it replaces), in the order given.
    """
    last = list(orders)
    due = [(timezone.now(), index, False) for index in range(len(last))]
    for _ in range(max_steps):
        if not due:
            return last
        at, index, fresh = heapq.heappop(due)
        if fresh:
            sleep(max((at - timezone.now()).total_seconds(), 0.0))
        step = order_advance(_fresh(last[index]) if fresh else last[index], exchange=exchange)
        last[index] = step.order
        if not step.done:
            heapq.heappush(due, (timezone.now() + timedelta(seconds=step.delay), index, True))
    raise RuntimeError(f"orders not final after {max_steps} steps: "
                       f"{[last[index].client_order_id for _, index, _ in due]}")


def _fresh(order: Order) -> Order:
    return Order.objects.select_related("account", "strategy", "position", "action").get(
        pk=order.pk)


def order_place(*, drive: Driver, **fields: Any) -> Order:
    """Record an order (``pipeline.order_submit`` arguments) and hand it to ``drive``.

    The order is recorded already claimed for its first attempt, so ``drive`` must
    run the first step in this thread (``run_inline``, ``tasks.drive_in_background``).
    """
    return drive(order_submit(claim=True, **fields))


def order_request(*, caller: AbstractBaseUser, strategy: Strategy,
                  idempotency_key: str | None = None, **fields: Any) -> tuple[Order, bool]:
    """A caller's entry order: recorded now, sent by the workers; ``(order, created)``.

    With the caller's idempotency key a retry (the 202 was lost) gets the order the
    first request recorded, ``created`` False, and nothing new is placed; the same
    key with different order fields is a ``RequestMismatch`` naming them. The key is
    claimed in the order's own transaction: a refused order (halt) leaves it free.
    """
    from execution.tasks import schedule_next

    try:
        with transaction.atomic():
            record = None
            if idempotency_key:
                record, fresh = client_request_claim(
                    caller=caller, scope=ClientRequestScope.ORDER, key=idempotency_key,
                    request={"strategy": strategy.name, **fields})
                if not fresh:
                    return record.order, False
            order = order_submit(account=strategy.account, strategy=strategy, **fields)
            audit_record(actor=caller.get_username(), action="order.place_request", target=order,
                         after={"strategy": strategy.name, **fields})
            if record is not None:
                client_request_answer(record, order=order)
            transaction.on_commit(lambda: schedule_next(Next(order, 0.0, "placed by API")))
    except OrderRefused as refused:  # the rollback took the refusal's record with it
        refused.requested_by = caller.get_username()
        refusal_record(refused)
        raise
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
    with transaction.atomic():
        action, created = Action.objects.get_or_create(
            idempotency_key=f"cancel:{order.pk}",
            defaults={"kind": ActionKind.CANCEL_ORDER, "order": order,
                      "requested_by": actor[:150]})
        if created:
            audit_record(actor=actor, action="order.cancel_request", target=order,
                         after={"action": action.pk, "status": order.status})
    if created:
        from lifecycle.services import dispatch_action

        dispatch_action(action)
    return action, created


# --- the action queue ------------------------------------------------------------

def _lease_seconds(action: Action) -> float:
    """``actionLeaseSeconds`` of the strategy the action works for (site config without one)."""
    strategy = (action.position.strategy if action.position_id else
                action.order.strategy if action.order_id and action.order.strategy_id else None)
    config = strategy.effective_config() if strategy else site_config()
    return config.order_execution.action_lease_seconds


def _load(action_id: int) -> Action | None:
    return Action.objects.select_related("position__strategy__account", "order__account",
                                         "order__strategy").filter(pk=action_id).first()


def action_claim(action_id: int) -> Action | None:
    """pending → running with a lease (compare-and-set); ``None`` when another worker has it."""
    action = _load(action_id)
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
    return _load(action.pk)


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
            _run_close(action, drive)
        else:
            _run_cancel(action, drive)
    except (DomainError, ExchangeError) as exc:
        log.warning("action %s failed: %s", action.pk, exc)
        _action_finish(action, ActionState.FAILED, error=str(exc))
    action.refresh_from_db()
    return action


def close_purpose(kind: str) -> str:
    """Emergency and shutdown closes must go through whatever the slippage."""
    return OrderPurpose.CLOSE if kind == ActionKind.CLOSE else OrderPurpose.EMERGENCY_CLOSE


def _run_close(action: Action, drive: Driver) -> None:
    """Close the action's position; resumable from any step a killed worker left.

    No order yet: the position is moved to CLOSING (if it is not already) and the
    close recorded — unless another order of the position is still active (it may be
    in doubt) or the position is marked for reconciliation: then nothing is sent and
    the action waits for its lease to run out.
    """
    position = Position.objects.select_related("strategy__account").get(pk=action.position_id)
    order = action.orders.select_related("account", "strategy", "position").order_by(
        "-created_at", "-pk").first()
    if order is None:
        if position.state == PositionState.CLOSED:
            _action_finish(action, ActionState.DONE, result={"position": "already closed"})
            return
        busy = position.attention or Order.objects.filter(
            position=position, status__in=OrderStatus.active()).values_list(
            "client_order_id", flat=True).first()
        if busy:
            log.warning("action %s: position %s is not closed now (%s): deferred",
                        action.pk, position.pk, busy)
            return
        if position.state != PositionState.CLOSING:
            try:
                position_begin_close(position, reason=action.reason or "manual",
                                     actor=action.requested_by)
            except InvalidStateTransition:
                position.refresh_from_db()
                if position.state == PositionState.CLOSED:
                    _action_finish(action, ActionState.DONE,
                                   result={"position": "already closed"})
                    return
                if position.state != PositionState.CLOSING:
                    raise
        try:
            order = order_submit(
                account=position.strategy.account, strategy=position.strategy,
                position=position, action=action, symbol=position.symbol,
                side=OrderSide.SELL if position.side == PositionSide.LONG else OrderSide.BUY,
                quantity=position.quantity, order_type=OrderType.MARKET,
                purpose=close_purpose(action.kind), reduce_only=True,
                client_order_id=f"close-{action.pk}")
        except DomainError as exc:  # no order could be recorded: the close is over
            with transaction.atomic():
                if _action_finish(action, ActionState.FAILED, error=str(exc)):
                    position_close_failed(position, reason=str(exc)[:200], actor="execution")
            return
    if order.is_final:
        action_settle(order)
        return
    drive(order)


def _run_cancel(action: Action, drive: Driver) -> None:
    """Mark the order for cancelling; the cancel and its read-back run on its account's queue."""
    order = Order.objects.select_related("account", "strategy", "position", "action").get(
        pk=action.order_id)
    if order.is_final or not order_begin_cancel(order, reason=f"cancel requested by "
                                                              f"{action.requested_by}"):
        _action_finish(action, ActionState.DONE, result=_order_result(order))
        return
    drive(order)


def settle_order_actions(order: Order, *, cancelled: bool = True) -> None:
    """A final order settles its close action and, if it was being cancelled, its cancels."""
    if order.action_id:
        action_settle(order)
    if cancelled:
        for action in Action.objects.filter(order=order, kind=ActionKind.CANCEL_ORDER,
                                            state__in=ActionState.open()):
            _action_finish(action, ActionState.DONE, result=_order_result(order))


def action_settle(order: Order) -> Action | None:
    """Record the end of a close: done when the position closed, failed otherwise.

    A close that failed for good returns the position to its holding-time state
    (``position_close_failed``) and keeps the order's error on the action.
    """
    action = Action.objects.filter(pk=order.action_id).first()
    if action is None or action.state not in ActionState.open():
        return action
    position = Position.objects.get(pk=action.position_id) if action.position_id else None
    result = _order_result(order)
    if position is None or position.state == PositionState.CLOSED:
        trade = getattr(position, "trade", None) if position else None
        if trade is not None:
            result.update(trade=trade.pk, pnl=plain(trade.pnl), exit_price=plain(trade.exit_price))
        _action_finish(action, ActionState.DONE, result=result)
        return action
    error = order.last_error or f"close order {order.client_order_id} ended {order.status}"
    if order.filled_quantity:
        error = f"{error} ({plain(order.filled_quantity)} of {plain(order.quantity)} filled)"
    with transaction.atomic():
        if _action_finish(action, ActionState.FAILED, result=result, error=error) and (
                position.state == PositionState.CLOSING):
            position_close_failed(position, reason=error[:200], actor="execution")
    return action


def _action_finish(action: Action, state: str, *, result: dict | None = None,
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


def _order_result(order: Order) -> dict[str, Any]:
    def text(value):
        return plain(value) if value is not None else None

    return {"order": order.client_order_id, "status": order.status,
            "filled": plain(order.filled_quantity),
            "average_price": text(order.average_fill_price),
            "slippage_percent": text(order.slippage_percent)}


# --- sweeps ------------------------------------------------------------------------

def actions_due(now=None) -> list[Action]:
    """Pending actions nobody picked up, and running ones whose worker went silent.

    A running action is due when its lease ran out and nothing carries it on: no
    order of its own (a close) or being cancelled (a cancel) is still active or was
    written in the last ``ACTION_SETTLE_SECONDS``. An active order has its own chain and
    the order-timeout sweep behind it; taking its action over while it waits in a busy
    queue would only add chains.
    """
    now = now or timezone.now()
    pending = Action.objects.filter(
        state=ActionState.PENDING, created_at__lte=now - timedelta(seconds=ACTION_PICKUP_SECONDS))
    # an order written this recently may be settling its action in its worker right now
    settling = Q(updated_at__gt=now - timedelta(seconds=ACTION_SETTLE_SECONDS))
    silent = Action.objects.filter(
        Q(lease_until__lte=now) | Q(lease_until__isnull=True), state=ActionState.RUNNING,
    ).exclude(Exists(Order.objects.filter(
        Q(status__in=OrderStatus.active()) | settling, action=OuterRef("pk")))).exclude(
        Exists(Order.objects.filter(Q(status=OrderStatus.CANCELLING) | settling,
                                    pk=OuterRef("order_id"))))
    return sorted((*_with_targets(pending)[:100], *_with_targets(silent)[:100]),
                  key=lambda action: (action.created_at, action.pk))[:100]


def _with_targets(actions: Any) -> Any:
    return actions.select_related("position__strategy__account", "order__account",
                                  "order__strategy").order_by("created_at", "pk")


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


def orders_overdue(now=None, *, account_id: int | None = None) -> list[Order]:
    """Active orders past their strategy's ``orderTimeoutSeconds`` (or stuck cancelling)."""
    now = now or timezone.now()
    candidates = Order.objects.filter(status__in=OrderStatus.active())
    if account_id is not None:
        candidates = candidates.filter(account_id=account_id)
    candidates = candidates.select_related(
        "account", "strategy", "position__strategy", "action").order_by("created_at")[:500]
    return [o for o in candidates if now >= order_deadline(o, order_config(o))]


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


def accounts_with_overdue_orders(now=None) -> list[int]:
    """Accounts that hold an order past its timeout (the sweep's fan-out, database only)."""
    return sorted({order.account_id for order in orders_overdue(now)})
