"""What an order's events mean for positions: lifecycle's handlers of execution's hooks.

Execution announces that an entry filled, that an exit order filled (more), that a
fill could not be applied, and asks which configuration an order runs under and how
much a timed-out emergency close may still close. The answers are here, registered
in ``lifecycle.apps`` (``execution.handlers``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from execution.handlers import ExitFill
from execution.models import Action, Order, OrderPurpose, OrderSide, OrderStatus
from lifecycle.models import Position, PositionSide, PositionState
from lifecycle.services import position_apply_close_fill, position_flag_attention, position_open
from tradingsite.live_config import OrderExecutionConfig, site_config

EXECUTION_ACTOR = "execution"


def order_execution_config(order: Order) -> OrderExecutionConfig:
    """The ``orderExecution`` config of the order's strategy (site config without one)."""
    strategy = order.strategy
    if strategy is None and order.position_id:
        strategy = order.position.strategy
    return strategy.effective_config().order_execution if strategy else (
        site_config().order_execution)


def action_execution_config(action: Action) -> OrderExecutionConfig:
    """The ``orderExecution`` config of the strategy an action works for."""
    strategy = (action.position.strategy if action.position_id else
                action.order.strategy if action.order_id and action.order.strategy_id else None)
    config = strategy.effective_config() if strategy else site_config()
    return config.order_execution


def entry_fill_open(order: Order, *, opened_at: datetime) -> Position:
    """An entry's fill opens its strategy's position, once (keyed by the order's fill)."""
    return position_open(
        strategy=order.strategy, symbol=order.symbol,
        side=PositionSide.LONG if order.side == OrderSide.BUY else PositionSide.SHORT,
        quantity=order.filled_quantity, entry_price=order.average_fill_price,
        opened_at=opened_at, entry_fee=order.fee, actor=EXECUTION_ACTOR,
        fill_key=f"{order.client_order_id}:{order.filled_quantity.normalize()}")


def exit_fill_apply(order: Order, fill: ExitFill) -> None:
    """A close order's new fill goes to its position (raises when the position cannot take it)."""
    position_apply_close_fill(order.position, fill_key=fill.fill_key, quantity=fill.quantity,
                              price=fill.price, fee=fill.fee, filled_at=fill.filled_at)


def fill_unapplied_flag(order: Order, *, reason: str) -> None:
    """The position is reconciled with the exchange before anything more is sent for it."""
    position_flag_attention(order.position_id, reason=reason, actor=EXECUTION_ACTOR)


def replacement_quantity(order: Order) -> Decimal | None:
    """A timed-out emergency close is replaced only while its position is closing and held."""
    position = order.position
    position.refresh_from_db(fields=["state", "quantity"])
    if position.state != PositionState.CLOSING or position.quantity <= 0:
        return None
    return position.quantity


def close_reduce_only(position: Position) -> bool:
    """Whether a close of ``position`` may go reduce-only (it can never open or flip one).

    A one-way exchange holds one net position per symbol. A reduce-only close is
    capped there at what that net position holds in its direction — refused, filled in
    part, or (on a lenient exchange) filled without moving anything — while the
    database counts it against this position. That happens when the account may hold
    exposure on the other side of the symbol: another position on the other side, or an
    entry on the close's side that is still active (its fill may be on the exchange
    already). Then the close goes as a plain order, which nets on the exchange exactly as
    the database counts it. Checked when the close is recorded and again before each send.
    """
    account_id, symbol = position.strategy.account_id, position.symbol
    if position.side == PositionSide.LONG:
        opposite, close_side = PositionSide.SHORT, OrderSide.SELL
    else:
        opposite, close_side = PositionSide.LONG, OrderSide.BUY
    other_side = Position.objects.filter(
        strategy__account_id=account_id, symbol=symbol, side=opposite,
        state__in=PositionState.active()).exclude(pk=position.pk)
    opening = Order.objects.filter(account_id=account_id, symbol=symbol, side=close_side,
                                   purpose=OrderPurpose.ENTRY, status__in=OrderStatus.active())
    return not (other_side.exists() or opening.exists())


def close_order_reduce_only(order: Order) -> bool:
    """``close_reduce_only`` of a close order's position (execution's hook)."""
    return close_reduce_only(order.position)


def register_handlers() -> None:
    """Called from ``LifecycleConfig.ready`` in every process."""
    from execution import handlers
    from lifecycle.close_actions import close_action_run, close_action_settle
    from lifecycle.selectors import markets_in_use

    handlers.register(
        order_config=order_execution_config, action_config=action_execution_config,
        entry_filled=entry_fill_open, exit_filled=exit_fill_apply,
        fill_unapplied=fill_unapplied_flag, replacement_quantity=replacement_quantity,
        close_reduce_only=close_order_reduce_only,
        close_action_run=close_action_run, close_action_settle=close_action_settle,
        markets_in_use=markets_in_use)


