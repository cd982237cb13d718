"""Execution services: driving orders, the action queue, cancels and the sweeps.

Entry points (Celery tasks, admin actions, API views, commands) call these. An
order is driven by a *driver*: ``run_inline`` loops over the pipeline's steps in
this thread (tests, benchmarks, scripts — with an injectable sleep), and the
Celery driver in ``execution.tasks`` runs one step and schedules the next with a
countdown, so a worker never sleeps.

Actions are idempotent: processing claims the action with a compare-and-set
(pending → running); the close order's client id is derived from the action
(``close-<action id>``), so a redelivered task or a second worker finds the order
already recorded instead of placing another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

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
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
)
from execution.pipeline import Next, order_begin_cancel, order_step, order_submit, plain
from lifecycle.models import Position, PositionSide, PositionState, Strategy
from lifecycle.services import position_begin_close, position_close_failed
from tradingsite.errors import DomainError, InvalidStateTransition

log = logging.getLogger(__name__)

Driver = Callable[[Order], Order]

# A pending action no on-commit task picked up within this is run by the sweep.
ACTION_PICKUP_SECONDS = 5
# A running action started this long ago is taken over: its worker died. Longer than
# the longest close (timeout 30 s, then up to maxRetries market replacements).
ACTION_STALE_SECONDS = 300


# --- driving orders --------------------------------------------------------------

def order_advance(order: Order, *, exchange: Exchange | None = None) -> Next:
    """One pipeline step; when an action's order chain ends, settle the action."""
    step = order_step(order, exchange=exchange)
    if step.done and step.order.action_id and step.order.is_final:
        action_settle(step.order)
    return step


def run_inline(*, exchange: Exchange | None = None,
               sleep: Callable[[float], None] = time.sleep, max_steps: int = 10_000) -> Driver:
    """A driver that runs an order to its end in this thread, sleeping between steps."""

    def drive(order: Order) -> Order:
        step = order_advance(order, exchange=exchange)
        for _ in range(max_steps):
            if step.done:
                return step.order
            sleep(step.delay)
            step = order_advance(_fresh(step.order), exchange=exchange)
        raise RuntimeError(f"order {step.order.client_order_id} not final after {max_steps} "
                           "steps")

    return drive


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
    """Cancel an active order now and verify the outcome with the exchange.

    The exchange decides: a fill that happened meanwhile is applied and the order
    may end FILLED. If the exchange has not confirmed yet, the order stays
    CANCELLING and the timeout sweep finishes the verification.
    """
    if order.is_final:
        raise InvalidStateTransition(f"order {order.client_order_id} is already {order.status}")
    order_begin_cancel(order, reason=f"cancel requested by {actor}")
    order_advance(order, exchange=exchange)
    return order


def order_request_cancel(order: Order, *, actor: str) -> tuple[Action, bool]:
    """Queue a cancel of ``order`` (one open cancel action per order)."""
    if order.is_final:
        raise InvalidStateTransition(f"order {order.client_order_id} is already {order.status}")
    action, created = Action.objects.get_or_create(
        idempotency_key=f"cancel:{order.pk}",
        defaults={"kind": ActionKind.CANCEL_ORDER, "order": order, "requested_by": actor[:150]})
    if created:
        from lifecycle.services import dispatch_action

        dispatch_action(action)
    return action, created


# --- the action queue ------------------------------------------------------------

def action_claim(action_id: int) -> Action | None:
    """pending → running (compare-and-set); ``None`` when another worker has it."""
    now = timezone.now()
    claimed = Action.objects.filter(pk=action_id, state=ActionState.PENDING).update(
        state=ActionState.RUNNING, started_at=now, attempts=F("attempts") + 1, updated_at=now)
    if not claimed:
        return None
    return Action.objects.select_related("position__strategy__account", "order__account").get(
        pk=action_id)


def action_take_over(action: Action) -> Action | None:
    """Take over a running action whose worker died (its ``started_at`` is stale)."""
    now = timezone.now()
    claimed = Action.objects.filter(pk=action.pk, state=ActionState.RUNNING,
                                    started_at=action.started_at).update(
        started_at=now, attempts=F("attempts") + 1, updated_at=now)
    if not claimed:
        return None
    return Action.objects.select_related("position__strategy__account", "order__account").get(
        pk=action.pk)


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
            _run_cancel(action, exchange)
    except (DomainError, ExchangeError) as exc:
        log.warning("action %s failed: %s", action.pk, exc)
        _action_finish(action, ActionState.FAILED, error=str(exc))
    action.refresh_from_db()
    return action


def close_purpose(kind: str) -> str:
    """Emergency and shutdown closes must go through whatever the slippage."""
    return OrderPurpose.CLOSE if kind == ActionKind.CLOSE else OrderPurpose.EMERGENCY_CLOSE


def _run_close(action: Action, drive: Driver) -> None:
    position = Position.objects.select_related("strategy__account").get(pk=action.position_id)
    order = action.orders.select_related("account", "strategy", "position").order_by(
        "-created_at", "-pk").first()
    if order is None:
        if position.state == PositionState.CLOSED:
            _action_finish(action, ActionState.DONE, result={"position": "already closed"})
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


def _run_cancel(action: Action, exchange: Exchange | None) -> None:
    order = action.order
    if not order.is_final:
        order_cancel(order, actor=action.requested_by, exchange=exchange)
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
        state=state, result=result or {}, error=error, finished_at=now, updated_at=now)
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
    """Pending actions nobody picked up, and running ones whose worker went silent."""
    now = now or timezone.now()
    return list(Action.objects.filter(
        Q(state=ActionState.PENDING, created_at__lte=now - timedelta(seconds=ACTION_PICKUP_SECONDS))
        | Q(state=ActionState.RUNNING,
            started_at__lte=now - timedelta(seconds=ACTION_STALE_SECONDS))
    ).order_by("created_at")[:100])


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


def orders_overdue(now=None) -> list[Order]:
    """Active orders past their strategy's ``orderTimeoutSeconds`` (or stuck cancelling)."""
    from execution.pipeline import order_config, order_deadline

    now = now or timezone.now()
    candidates = Order.objects.filter(status__in=OrderStatus.active()).select_related(
        "account", "strategy", "position__strategy", "action").order_by("created_at")[:500]
    return [o for o in candidates if now >= order_deadline(o, order_config(o))]


def orders_expire_overdue(*, schedule: Callable[[Next], None], now=None,
                          exchange_of: Callable[[Any], Exchange] = exchange_for) -> int:
    """The timeout sweep: one step for each overdue order (cancel → verify → replace).

    A replacement order starts its own chain through ``schedule``.
    """
    handled = 0
    for order in orders_overdue(now):
        try:
            step = order_advance(order, exchange=exchange_of(order.account))
        except ExchangeError as exc:
            log.warning("timeout sweep: order %s: %s", order.client_order_id, exc)
            continue
        handled += 1
        if not step.done and step.order.pk != order.pk:
            schedule(step)
    return handled
