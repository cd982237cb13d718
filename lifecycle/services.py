"""The single write path for positions: open, transition, close.

Every transition is a compare-and-set on the row (``filter(id, state=old).update``),
writes a ``PositionEvent``, fires a signal and pushes a live event after commit.
Two workers racing on the same position therefore produce exactly one transition;
the loser gets ``InvalidStateTransition``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from execution.models import Action, ActionKind, ActionState, CloseReason
from lifecycle.models import (
    Position,
    PositionEvent,
    PositionFill,
    PositionSide,
    PositionSource,
    PositionState,
    Strategy,
    Trade,
)
from lifecycle.signals import position_closed, position_opened, position_state_changed
from tradingsite.errors import InvalidStateTransition
from tradingsite.live import broadcast

S = PositionState

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.OPEN: frozenset({S.WARNING, S.CLOSING}),
    S.WARNING: frozenset({S.CRITICAL, S.CLOSING}),
    S.CRITICAL: frozenset({S.CLOSING}),
    # A close that failed for good returns the position to where its holding time puts it.
    S.CLOSING: frozenset({S.CLOSED, S.OPEN, S.WARNING, S.CRITICAL}),
    S.CLOSED: frozenset(),
}

# The timestamp column set when a position enters a state.
STATE_TIMESTAMP = {S.WARNING: "warning_at", S.CRITICAL: "critical_at", S.CLOSING: "closing_at",
                   S.CLOSED: "closed_at"}


def is_allowed(from_state: str, to_state: str) -> bool:
    return to_state in ALLOWED_TRANSITIONS.get(from_state, frozenset())


def position_payload(position: Position) -> dict[str, Any]:
    """What the live layer and the API say about a position's lifecycle."""
    return {
        "id": position.pk,
        "strategy": position.strategy.name if position.strategy_id else None,
        "symbol": position.symbol,
        "side": position.side,
        "quantity": position.quantity,
        "entry_price": position.entry_price,
        "opened_at": position.opened_at,
        "state": position.state,
        "state_changed_at": position.state_changed_at,
        "close_reason": position.close_reason,
    }


def _record_event(position: Position, *, kind: str, from_state: str = "", to_state: str = "",
                  reason: str = "", actor: str = "system", details: dict | None = None,
                  at: datetime | None = None) -> PositionEvent:
    return PositionEvent.objects.create(
        position=position, kind=kind, from_state=from_state, to_state=to_state,
        reason=reason[:255], actor=actor[:150], details=details or {},
        created_at=at or timezone.now())


def position_open(*, strategy: Strategy, symbol: str, side: str, quantity: Decimal,
                  entry_price: Decimal, opened_at: datetime | None = None,
                  entry_fee: Decimal = Decimal("0"), source: str = PositionSource.FILL,
                  external_ref: str = "", actor: str = "system",
                  fill_key: str | None = None) -> Position:
    """Start supervising a filled position (entry fill, API hand-over or reconciliation).

    With ``fill_key`` the entry fill is recorded once: a repeated call with the same
    key returns the position it already opened.
    """
    if side not in PositionSide.values:
        raise ValueError(f"side must be one of {PositionSide.values}, got {side!r}")
    quantity, entry_price = Decimal(quantity), Decimal(entry_price)
    if quantity <= 0 or entry_price <= 0:
        raise ValueError("quantity and entry_price must be positive")
    opened_at = opened_at or timezone.now()
    with transaction.atomic():
        if fill_key:
            existing = PositionFill.objects.filter(fill_key=fill_key).select_related(
                "position__strategy").first()
            if existing:
                return existing.position
        position = Position.objects.create(
            strategy=strategy, symbol=symbol, side=side, quantity=quantity,
            initial_quantity=quantity, entry_price=entry_price, entry_fee=Decimal(entry_fee),
            opened_at=opened_at, state=S.OPEN, state_changed_at=timezone.now(),
            peak_price=entry_price, trough_price=entry_price, last_price=entry_price,
            last_price_at=opened_at, source=source, external_ref=external_ref)
        if fill_key:
            PositionFill.objects.create(position=position, kind=PositionFill.Kind.ENTRY,
                                        fill_key=fill_key, quantity=quantity, price=entry_price,
                                        fee=Decimal(entry_fee), filled_at=opened_at)
        _record_event(position, kind="opened", to_state=S.OPEN, actor=actor,
                      reason=f"opened from {PositionSource(source).label.lower()}",
                      details={"quantity": str(quantity), "entry_price": str(entry_price)})
        position_opened.send(sender=Position, position=position)
        broadcast("position.opened", position_payload(position))
    return position


def position_transition(position: Position, *, to_state: str, reason: str, actor: str = "system",
                        details: dict | None = None, **fields: Any) -> Position:
    """Move ``position`` from its current state to ``to_state`` atomically.

    ``position.state`` is the state the caller saw; if the row changed meanwhile
    (another worker got there first) nothing is written and the error says so.
    Extra ``fields`` are written in the same UPDATE.
    """
    from_state = position.state
    if not is_allowed(from_state, to_state):
        raise InvalidStateTransition(
            f"position {position.pk}: {from_state} → {to_state} is not a valid transition")
    now = timezone.now()
    values: dict[str, Any] = {"state": to_state, "state_changed_at": now, "updated_at": now,
                              **fields}
    if to_state in STATE_TIMESTAMP:
        values.setdefault(STATE_TIMESTAMP[to_state], now)
    with transaction.atomic():
        changed = Position.objects.filter(pk=position.pk, state=from_state).update(**values)
        if not changed:
            current = Position.objects.filter(pk=position.pk).values_list("state", flat=True).first()
            raise InvalidStateTransition(
                f"position {position.pk} is no longer {from_state} (now {current}); "
                f"{from_state} → {to_state} not applied")
        for name, value in values.items():
            setattr(position, name, value)
        _record_event(position, kind="transition", from_state=from_state, to_state=to_state,
                      reason=reason, actor=actor, details=details, at=now)
        position_state_changed.send(sender=Position, position=position, from_state=from_state,
                                    to_state=to_state, reason=reason, actor=actor)
        broadcast("position.state_changed",
                  {**position_payload(position), "from_state": from_state, "reason": reason})
    return position


def position_request_close(*, position: Position, reason: str, actor: str,
                           kind: str = ActionKind.EMERGENCY_CLOSE,
                           idempotency_key: str | None = None) -> tuple[Action, bool]:
    """Queue the one close of a position; a repeated request returns the open one.

    Timeout, risk monitor, operator and shutdown all call this; whichever comes
    first wins and the others get ``(existing_action, False)``. The action queue
    (``execution``) moves the position to CLOSING when it places the order.
    """
    if reason not in CloseReason.values:
        raise ValueError(f"reason must be one of {CloseReason.values}, got {reason!r}")
    if kind not in ActionKind.closing():
        raise ValueError(f"{kind!r} is not a closing action")
    existing = _open_close_action(position)
    if existing:
        return existing, False
    if position.state == S.CLOSED:
        raise InvalidStateTransition(f"position {position.pk} is already CLOSED")
    key = idempotency_key or f"close:{position.pk}:{timezone.now().timestamp():.6f}"
    try:
        with transaction.atomic():
            action = Action.objects.create(kind=kind, position=position, reason=reason,
                                           requested_by=actor[:150], idempotency_key=key)
            _record_event(position, kind="close_requested", reason=f"{reason}: close requested",
                          actor=actor, details={"action_id": action.pk, "kind": kind})
    except IntegrityError:
        existing = _open_close_action(position) or Action.objects.filter(
            idempotency_key=key).first()
        if existing is None:
            raise
        return existing, False
    dispatch_action(action)
    return action, True


def _open_close_action(position: Position) -> Action | None:
    return Action.objects.filter(position=position, kind__in=ActionKind.closing(),
                                 state__in=ActionState.open()).first()


def dispatch_action(action: Action) -> None:
    """Hand an action to the worker once the transaction that created it commits."""
    from execution.tasks import process_action

    transaction.on_commit(lambda: process_action.delay(action.pk))


def position_begin_close(position: Position, *, reason: str, actor: str) -> Position:
    """OPEN/WARNING/CRITICAL → CLOSING, recording which signal asked for the close."""
    return position_transition(position, to_state=S.CLOSING, reason=f"{reason}: closing",
                               actor=actor, close_reason=reason, close_requested_by=actor[:150])


def state_for_holding_time(position: Position, now: datetime | None = None) -> str:
    """Where the timeout rules put a position that is not closing."""
    limits = position.strategy.effective_config().lifecycle
    minutes = position.holding_seconds(now) / 60
    if minutes >= limits.max_holding_time_minutes:
        return S.CRITICAL
    if minutes >= limits.warning_threshold_minutes:
        return S.WARNING
    return S.OPEN


def position_close_failed(position: Position, *, reason: str, actor: str) -> Position:
    """CLOSING → OPEN/WARNING/CRITICAL after a close order failed for good."""
    return position_transition(position, to_state=state_for_holding_time(position),
                               reason=f"close failed: {reason}", actor=actor,
                               close_reason="", close_requested_by="", closing_at=None)


def position_apply_close_fill(position: Position, *, fill_key: str, quantity: Decimal,
                              price: Decimal, fee: Decimal = Decimal("0"),
                              filled_at: datetime | None = None,
                              actor: str = "execution") -> Trade | None:
    """Apply one exit fill to a CLOSING position; the last one closes it.

    A partial fill reduces the quantity and keeps the position CLOSING. When
    nothing is left the position becomes CLOSED and its ``Trade`` is written with
    realised PnL net of entry and exit fees. A fill already applied (same
    ``fill_key``) is a no-op, so redelivered order updates never double-count.
    """
    quantity, price, fee = Decimal(quantity), Decimal(price), Decimal(fee)
    filled_at = filled_at or timezone.now()
    with transaction.atomic():
        locked = Position.objects.select_for_update().select_related("strategy").get(
            pk=position.pk)
        if PositionFill.objects.filter(fill_key=fill_key).exists():
            return getattr(locked, "trade", None) if locked.state == S.CLOSED else None
        if locked.state != S.CLOSING:
            raise InvalidStateTransition(
                f"position {locked.pk} is {locked.state}: exit fills apply only while CLOSING")
        if quantity <= 0 or quantity > locked.quantity:
            raise ValueError(f"position {locked.pk}: exit fill of {quantity} with "
                             f"{locked.quantity} held")
        PositionFill.objects.create(position=locked, kind=PositionFill.Kind.EXIT,
                                    fill_key=fill_key, quantity=quantity, price=price, fee=fee,
                                    filled_at=filled_at)
        locked.quantity -= quantity
        locked.closed_quantity += quantity
        locked.exit_value += quantity * price
        locked.exit_fees += fee
        locked.last_price, locked.last_price_at = price, filled_at
        Position.objects.filter(pk=locked.pk).update(
            quantity=locked.quantity, closed_quantity=locked.closed_quantity,
            exit_value=locked.exit_value, exit_fees=locked.exit_fees, last_price=price,
            last_price_at=filled_at, updated_at=timezone.now())
        if locked.quantity > 0:
            _record_event(locked, kind="partial_fill", reason="partial exit fill", actor=actor,
                          details={"quantity": str(quantity), "price": str(price),
                                   "remaining": str(locked.quantity)})
            _copy_fields(locked, position)
            return None
        closed_at = max(filled_at, locked.opened_at)
        position_transition(locked, to_state=S.CLOSED, reason=f"{locked.close_reason or 'signal'}: "
                            "closed", actor=actor, closed_at=closed_at)
        trade = _write_trade(locked, closed_at)
        position_closed.send(sender=Position, position=locked, trade=trade)
        broadcast("position.closed", {**position_payload(locked), "pnl": trade.pnl,
                                      "exit_price": trade.exit_price,
                                      "exit_reason": trade.exit_reason})
        _copy_fields(locked, position)
    return trade


def _copy_fields(source: Position, target: Position) -> None:
    if source is not target:
        target.__dict__.update({k: v for k, v in source.__dict__.items() if not k.startswith("_")})


def realised_pnl(*, side: str, entry_price: Decimal, quantity: Decimal, exit_value: Decimal,
                 fees: Decimal) -> Decimal:
    """PnL of closing ``quantity`` bought/sold at ``entry_price`` for ``exit_value``, net of fees."""
    gross = exit_value - entry_price * quantity
    return (gross if side == PositionSide.LONG else -gross) - fees


def _write_trade(position: Position, closed_at: datetime) -> Trade:
    quantity = position.closed_quantity
    fees = position.entry_fee + position.exit_fees
    pnl = realised_pnl(side=position.side, entry_price=position.entry_price, quantity=quantity,
                       exit_value=position.exit_value, fees=fees)
    notional = position.entry_price * quantity
    return Trade.objects.create(
        position=position, strategy=position.strategy, symbol=position.symbol,
        side=position.side, quantity=quantity, entry_price=position.entry_price,
        exit_price=(position.exit_value / quantity).quantize(Decimal("1e-10")),
        opened_at=position.opened_at, closed_at=closed_at, fees=fees,
        pnl=pnl.quantize(Decimal("1e-10")),
        pnl_percent=(pnl / notional * 100).quantize(Decimal("1e-6")),
        holding_seconds=int((closed_at - position.opened_at).total_seconds()),
        exit_reason=position.close_reason or CloseReason.SIGNAL)
