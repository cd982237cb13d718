"""Close actions: how the action queue closes a position, and how a close's end settles it.

The action queue (claim, lease, sweep, cancel actions) is execution's; it calls
``close_action_run`` for a close action and ``close_action_settle`` when the close
order ends, through the hooks registered in ``lifecycle.apps``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from execution.models import (
    Action,
    ActionKind,
    ActionState,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
)
from execution.pipeline import order_submit, plain
from execution.services import action_finish, order_result
from lifecycle.close_executors import close_executor_for
from lifecycle.models import Position, PositionSide, PositionState
from lifecycle.order_events import close_reduce_only
from lifecycle.services import position_begin_close, position_close_failed
from tradingsite.errors import DomainError, InvalidStateTransition

log = logging.getLogger(__name__)


def close_purpose(kind: str) -> str:
    """Emergency and shutdown closes must go through whatever the slippage."""
    return OrderPurpose.CLOSE if kind == ActionKind.CLOSE else OrderPurpose.EMERGENCY_CLOSE


def close_action_run(action: Action, drive: Callable[[Order], Order]) -> None:
    """Close the action's position; resumable from any step a killed worker left.

    No order yet: the position is moved to CLOSING (if it is not already) and the
    close recorded — unless another order of the position is still active (it may be
    in doubt) or the position is marked for reconciliation: then nothing is sent and
    the action waits for its lease to run out. A position whose owner registered a
    close executor (``lifecycle.close_executors``: a bot) is closed by the owner
    unless the executor hands it back.
    """
    position = Position.objects.select_related("strategy__account").get(pk=action.position_id)
    order = action.orders.select_related("account", "strategy", "position").order_by(
        "-created_at", "-pk").first()
    if order is None:
        if position.state == PositionState.CLOSED:
            action_finish(action, ActionState.DONE, result={"position": "already closed"})
            return
        executor = close_executor_for(position)
        if executor is not None and executor(action, position):
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
                    action_finish(action, ActionState.DONE,
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
                purpose=close_purpose(action.kind), reduce_only=close_reduce_only(position),
                client_order_id=f"close-{action.pk}")
        except DomainError as exc:  # no order could be recorded: the close is over
            with transaction.atomic():
                if action_finish(action, ActionState.FAILED, error=str(exc)):
                    position_close_failed(position, reason=str(exc)[:200], actor="execution")
            return
    if order.is_final:
        close_action_settle(order)
        return
    drive(order)


def close_action_settle(order: Order) -> Action | None:
    """Record the end of a close: done when the position closed, failed otherwise.

    A close that failed for good returns the position to its holding-time state
    (``position_close_failed``) and keeps the order's error on the action.
    """
    action = Action.objects.filter(pk=order.action_id).first()
    if action is None or action.state not in ActionState.open():
        return action
    position = Position.objects.get(pk=action.position_id) if action.position_id else None
    result = order_result(order)
    if position is None or position.state == PositionState.CLOSED:
        trade = getattr(position, "trade", None) if position else None
        if trade is not None:
            result.update(trade=trade.pk, pnl=plain(trade.pnl), exit_price=plain(trade.exit_price))
        action_finish(action, ActionState.DONE, result=result)
        return action
    error = order.last_error or f"close order {order.client_order_id} ended {order.status}"
    if order.filled_quantity:
        error = f"{error} ({plain(order.filled_quantity)} of {plain(order.quantity)} filled)"
    with transaction.atomic():
        if action_finish(action, ActionState.FAILED, result=result, error=error) and (
                position.state == PositionState.CLOSING):
            position_close_failed(position, reason=error[:200], actor="execution")
    return action


def close_actions_settle(position: Position, *, result: dict[str, Any]) -> list[Action]:
    """A position closed without an order of the platform's (its bot exited): its open
    close actions are done, with ``result`` (and the trade) recorded on them."""
    trade = getattr(position, "trade", None) if position.state == PositionState.CLOSED else None
    if trade is not None:
        result = {**result, "trade": trade.pk, "pnl": plain(trade.pnl),
                  "exit_price": plain(trade.exit_price)}
    settled = []
    for action in Action.objects.filter(position=position, kind__in=ActionKind.closing(),
                                        state__in=ActionState.open()):
        if action_finish(action, ActionState.DONE, result=result):
            settled.append(action)
    return settled
