"""The single write path for positions: open, transition, close, time out.

Every transition follows the one rule in ``lifecycle.transitions`` (allowed moves, the
columns written, the event recorded, the live event pushed); one position's is a
compare-and-set on the row (``filter(id, state=old).update``) that fires a signal.
Two workers racing on the same position therefore produce exactly one transition;
the loser gets ``InvalidStateTransition``. The timeout pass (``timeout_pass_run``)
applies the same rules set-based, in a constant number of queries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    F,
    IntegerField,
    Max,
    Q,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, JSONObject
from django.utils import timezone

from execution.client_requests import canonical
from execution.models import Action, ActionKind, ActionState
from execution.services import action_dispatch, actions_dispatch
from lifecycle.danger import position_danger_level
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
from lifecycle.selectors import limits_of, strategy_limits
from lifecycle.signals import (
    close_failed,
    close_requested,
    position_closed,
    position_opened,
    position_state_changed,
    positions_moved,
    positions_need_reconcile,
)
from lifecycle.timeouts import (
    CLOSE_RETRY_MAX,
    HoldingLimits,
    close_retry_schedule,
    group_strategies,
)
from lifecycle.transitions import (
    TRANSITION_EVENT,
    live_many,
    live_one,
    transition_check,
    transition_values,
)
from tradingsite.audit import audit_record
from tradingsite.domain import CloseReason
from tradingsite.errors import InvalidStateTransition, RequestMismatch
from tradingsite.live import broadcast, broadcast_many
from tradingsite.sql import InArray, insert_row, insert_select, update_returning_pks

S = PositionState

# How the "opened" event names where a position came from.
OPENED_FROM = {PositionSource.FILL: "entry fill", PositionSource.API: "API hand-over",
               PositionSource.RECONCILE: "reconciliation", PositionSource.MANUAL: "operator",
               PositionSource.BOT: "bot hand-over"}


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
        "danger_level": position_danger_level(position.state, position.danger_level),
    }


def _record_event(position: Position, *, kind: str, from_state: str = "", to_state: str = "",
                  reason: str = "", actor: str = "system", details: dict | None = None,
                  at: datetime | None = None) -> PositionEvent:
    event = PositionEvent(position=position, kind=kind, from_state=from_state,
                          to_state=to_state, reason=reason[:255], actor=actor[:150],
                          details=details or {}, created_at=at or timezone.now())
    insert_row(event)  # append-only history: no model signals to send
    return event


def position_open(*, strategy: Strategy, symbol: str, side: str, quantity: Decimal,
                  entry_price: Decimal, opened_at: datetime | None = None,
                  entry_fee: Decimal = Decimal("0"), source: str = PositionSource.FILL,
                  external_ref: str = "", actor: str = "system",
                  fill_key: str | None = None) -> Position:
    """Start supervising a filled position (entry fill, API hand-over or reconciliation).

    With ``fill_key`` the entry fill is recorded once: a repeated call with the same
    key returns the position it already opened, also when two workers race.
    """
    position, _ = _open_position(
        strategy=strategy, symbol=symbol, side=side, quantity=quantity, entry_price=entry_price,
        opened_at=opened_at, entry_fee=entry_fee, source=source, external_ref=external_ref,
        actor=actor, fill_key=fill_key)
    return position


def position_hand_over(*, strategy: Strategy, symbol: str, side: str, quantity: Decimal,
                       entry_price: Decimal, opened_at: datetime | None = None,
                       entry_fee: Decimal = Decimal("0"), external_ref: str = "",
                       actor: str = "api", source: str = PositionSource.API
                       ) -> tuple[Position, bool]:
    """Take over supervision of a position an external bot filled; ``(position, created)``.

    Idempotent on ``(strategy, external_ref)`` when a reference is given: the bot may
    retry the hand-over and gets the position it already handed over, if it asks for
    the same position; a different symbol, side, quantity, price, fee or (given)
    opening time is a ``RequestMismatch`` naming them. Concurrent hand-overs are
    decided by the entry fill's unique key. ``source`` says who owns the position
    from now on (``BOT``: a bot connection, which then also closes it).
    """
    given = {"symbol": symbol, "side": side, "quantity": Decimal(quantity),
             "entry_price": Decimal(entry_price), "entry_fee": Decimal(entry_fee),
             **({"opened_at": opened_at} if opened_at is not None else {})}
    fill_key = None
    if external_ref:
        existing = Position.objects.filter(strategy=strategy, external_ref=external_ref).first()
        if existing:
            return _handed_over_again(existing, given), False
        fill_key = f"handover:{strategy.pk}:{external_ref}"
    position, created = _open_position(
        strategy=strategy, symbol=symbol, side=side, quantity=quantity, entry_price=entry_price,
        opened_at=opened_at, entry_fee=entry_fee, source=source,
        external_ref=external_ref, actor=actor, fill_key=fill_key)
    return (position if created else _handed_over_again(position, given)), created


def _handed_over_again(position: Position, given: dict[str, Any]) -> Position:
    """The position a repeated hand-over names, if it asks for the same one."""
    first = {"symbol": position.symbol, "side": position.side,
             "quantity": position.initial_quantity, "entry_price": position.entry_price,
             "entry_fee": position.entry_fee, "opened_at": position.opened_at}
    differences = {name: (canonical(first[name]), canonical(value))
                   for name, value in given.items() if first[name] != value}
    if differences:
        raise RequestMismatch(f"external_ref {position.external_ref!r}", differences)
    return position


def _existing_entry(fill_key: str | None) -> Position | None:
    if not fill_key:
        return None
    fill = PositionFill.objects.filter(fill_key=fill_key).select_related(
        "position__strategy").first()
    return fill.position if fill else None


def _open_position(*, strategy: Strategy, symbol: str, side: str, quantity: Decimal,
                   entry_price: Decimal, opened_at: datetime | None, entry_fee: Decimal,
                   source: str, external_ref: str, actor: str,
                   fill_key: str | None) -> tuple[Position, bool]:
    if side not in PositionSide.values:
        raise ValueError(f"side must be one of {PositionSide.values}, got {side!r}")
    if source not in PositionSource.values:
        raise ValueError(f"source must be one of {PositionSource.values}, got {source!r}")
    quantity, entry_price, entry_fee = Decimal(quantity), Decimal(entry_price), Decimal(entry_fee)
    if quantity <= 0 or entry_price <= 0:
        raise ValueError("quantity and entry_price must be positive")
    if entry_fee < 0:
        raise ValueError("entry_fee must not be negative")
    opened_at = opened_at or timezone.now()
    now = timezone.now()
    # Joins the caller's transaction (the order pipeline opens positions inside its own).
    with transaction.atomic(savepoint=False):
        position = Position(
            strategy=strategy, symbol=symbol, side=side, quantity=quantity,
            initial_quantity=quantity, entry_price=entry_price, entry_fee=entry_fee,
            opened_at=opened_at, state=S.OPEN, state_changed_at=now,
            peak_price=entry_price, trough_price=entry_price, last_price=entry_price,
            last_price_at=opened_at, source=source, external_ref=external_ref)
        try:
            # The fill key is unique: a second recording of the same entry fill fails
            # here and is rolled back to the savepoint, whoever got there first.
            with transaction.atomic():
                insert_row(position)
                if fill_key:
                    insert_row(PositionFill(
                        position=position, kind=PositionFill.Kind.ENTRY, fill_key=fill_key,
                        quantity=quantity, price=entry_price, fee=entry_fee,
                        filled_at=opened_at))
        except IntegrityError:
            existing = _existing_entry(fill_key)
            if existing is None:
                raise
            return existing, False
        _record_event(position, kind="opened", to_state=S.OPEN, actor=actor,
                      reason=f"opened from {OPENED_FROM[source]}",
                      details={"quantity": str(quantity), "entry_price": str(entry_price)},
                      at=now)
        position_opened.send(sender=Position, position=position)
        broadcast("position.opened", position_payload(position))
    return position, True


def position_transition(position: Position, *, to_state: str, reason: str, actor: str = "system",
                        details: dict | None = None, **fields: Any) -> Position:
    """Move ``position`` from its current state to ``to_state`` atomically.

    ``position.state`` is the state the caller saw; if the row changed meanwhile
    (another worker got there first) nothing is written and the error says so.
    Extra ``fields`` are written in the same UPDATE.
    """
    from_state = position.state
    transition_check(from_state, to_state, position_id=position.pk)
    now = timezone.now()
    values = transition_values(to_state, now, **fields)
    with transaction.atomic():
        changed = Position.objects.filter(pk=position.pk, state=from_state).update(**values)
        if not changed:
            current = Position.objects.filter(pk=position.pk).values_list("state", flat=True).first()
            raise InvalidStateTransition(
                f"position {position.pk} is no longer {from_state} (now {current}); "
                f"{from_state} → {to_state} not applied")
        for name, value in values.items():
            setattr(position, name, value)
        _record_event(position, kind=TRANSITION_EVENT, from_state=from_state,
                      to_state=to_state, reason=reason, actor=actor, details=details, at=now)
        position_state_changed.send(sender=Position, position=position, from_state=from_state,
                                    to_state=to_state, reason=reason, actor=actor)
        broadcast(*live_one(position_payload(position), from_state=from_state, reason=reason))
    return position


def position_request_close(*, position: Position, reason: str, actor: str,
                           kind: str = ActionKind.EMERGENCY_CLOSE,
                           note: str = "") -> tuple[Action, bool]:
    """Queue the one close of a position; a repeated request returns the open one.

    Timeout, risk monitor, operator and shutdown all call this; whichever comes
    first wins and the others get ``(existing_action, False)``. The action queue
    (``execution``) moves the position to CLOSING when it places the order.
    ``note`` is the operator's free text, kept on the ``close_requested`` event.
    The action's key is built here (``close:<id>:<n>``), never taken from a client:
    callers' own keys live in ``execution.ClientRequest``.
    """
    if reason not in CloseReason.values:
        raise ValueError(f"reason must be one of {CloseReason.values}, got {reason!r}")
    if kind not in ActionKind.closing():
        raise ValueError(f"{kind!r} is not a closing action")
    existing = _open_close_action(position)
    if existing:
        return existing, False
    current = Position.objects.filter(pk=position.pk).values_list("state", flat=True).first()
    if current in (None, S.CLOSED):
        raise InvalidStateTransition(f"position {position.pk} is already CLOSED")
    # Deterministic: the n-th close of a position has one key, so racing requests collide
    # on it (and on the one-open-close constraint) instead of queueing twice.
    previous = Action.objects.filter(position=position, kind__in=ActionKind.closing()).count()
    key = f"close:{position.pk}:{previous}"
    note = note.strip()
    try:
        with transaction.atomic():
            action = Action.objects.create(kind=kind, position=position, reason=reason,
                                           requested_by=actor[:150], idempotency_key=key)
            _record_event(position, kind="close_requested",
                          reason=f"{reason}: close requested" + (f" — {note}" if note else ""),
                          actor=actor, details={"action_id": action.pk, "kind": kind,
                                                **({"note": note} if note else {})})
            close_requested.send(sender=Position, position=position, action=action,
                                 reason=reason, kind=kind, actor=actor, note=note)
            audit_record(actor=actor, action="position.close_request", target=position,
                         after={"action": action.pk, "kind": kind, "reason": reason},
                         reason=note)
    except IntegrityError:
        existing = _open_close_action(position) or Action.objects.filter(
            idempotency_key=key, position=position).first()
        if existing is None:
            raise
        return existing, False
    action_dispatch(action)
    return action, True


def _open_close_action(position: Position) -> Action | None:
    return Action.objects.filter(position=position, kind__in=ActionKind.closing(),
                                 state__in=ActionState.open()).first()


def position_begin_close(position: Position, *, reason: str, actor: str) -> Position:
    """OPEN/WARNING/CRITICAL → CLOSING, recording which signal asked for the close.

    If the timeout pass moved the position since the caller read it (OPEN →
    WARNING → CRITICAL), the close still applies from the state it is in now: any
    held state may be closed. A position already CLOSING or CLOSED refuses, so two
    workers racing to close it produce exactly one close.
    """
    for _ in range(len(PositionState.holding())):
        try:
            return position_transition(position, to_state=S.CLOSING, reason=f"{reason}: closing",
                                       actor=actor, close_reason=reason,
                                       close_requested_by=actor[:150])
        except InvalidStateTransition:
            current = Position.objects.filter(pk=position.pk).values_list(
                "state", flat=True).first()
            if current == position.state or current not in PositionState.holding():
                raise
            position.state = current
    raise InvalidStateTransition(f"position {position.pk}: state kept changing; close not begun")


def state_for_holding_time(position: Position, now: datetime | None = None) -> str:
    """Where the timeout rules put a position that is not closing."""
    limits = limits_of(position.strategy)
    minutes = position.holding_seconds(now) / 60
    if minutes >= limits.max_minutes:
        return S.CRITICAL
    if minutes >= limits.warning_minutes:
        return S.WARNING
    return S.OPEN


def position_close_failed(position: Position, *, reason: str, actor: str) -> Position:
    """CLOSING → OPEN/WARNING/CRITICAL after a close order failed for good."""
    from lifecycle.deadlines import deadlines_changed

    with transaction.atomic():
        moved = position_transition(position, to_state=state_for_holding_time(position),
                                    reason=f"close failed: {reason}", actor=actor,
                                    close_reason="", close_requested_by="", closing_at=None)
        close_failed.send(sender=Position, position=position, reason=reason, actor=actor)
    deadlines_changed()  # held again: its deadlines count
    return moved


def position_apply_close_fill(position: Position, *, fill_key: str, quantity: Decimal,
                              price: Decimal, fee: Decimal = Decimal("0"),
                              filled_at: datetime | None = None,
                              actor: str = "execution", exit_reason: str = "",
                              partial_while_held: bool = False) -> Trade | None:
    """Apply one exit fill to a CLOSING position; the last one closes it.

    A partial fill reduces the quantity and keeps the position CLOSING. When
    nothing is left the position becomes CLOSED and its ``Trade`` is written with
    realised PnL net of entry and exit fees. A fill already applied (same
    ``fill_key``) is a no-op, so redelivered order updates never double-count.

    A bot that owns its position reports exits it decided itself: ``exit_reason``
    is then the trade's exit reason (default: the close reason), and with
    ``partial_while_held`` a partial exit reduces a position that is not closing
    (it keeps its state; a fill that would close it must come while CLOSING).
    """
    quantity, price, fee = Decimal(quantity), Decimal(price), Decimal(fee)
    filled_at = filled_at or timezone.now()
    with transaction.atomic():
        locked = Position.objects.select_for_update().select_related("strategy").get(
            pk=position.pk)
        if PositionFill.objects.filter(fill_key=fill_key).exists():
            return getattr(locked, "trade", None) if locked.state == S.CLOSED else None
        held_partial = (partial_while_held and locked.state in S.holding()
                        and quantity < locked.quantity)
        if locked.state != S.CLOSING and not held_partial:
            raise InvalidStateTransition(
                f"position {locked.pk} is {locked.state}: exit fills apply only while CLOSING")
        if exit_reason and exit_reason not in CloseReason.values:
            raise ValueError(f"exit_reason must be one of {CloseReason.values}, got "
                             f"{exit_reason!r}")
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
        trade = _write_trade(locked, closed_at, exit_reason=exit_reason)
        position_closed.send(sender=Position, position=locked, trade=trade)
        broadcast("position.closed", {**position_payload(locked), "pnl": trade.pnl,
                                      "exit_price": trade.exit_price,
                                      "exit_reason": trade.exit_reason})
        _copy_fields(locked, position)
    return trade


def _copy_fields(source: Position, target: Position) -> None:
    if source is not target:
        target.__dict__.update({k: v for k, v in source.__dict__.items() if not k.startswith("_")})


def position_flag_attention(position_id: int, *, reason: str, actor: str) -> None:
    """Mark a position for reconciliation: nothing more is sent for it until it is done.

    An exit fill it could not take is the reason today; the timeout pass then
    reconciles the position with the exchange instead of queueing closes.
    """
    now = timezone.now()
    position = Position.objects.filter(pk=position_id).first()
    if position is None:
        return
    Position.objects.filter(pk=position_id).update(attention=reason[:255], updated_at=now)
    _record_event(position, kind="attention", reason=reason, actor=actor, at=now)


def position_clear_attention(position: Position, *, reason: str, actor: str) -> bool:
    """The reconciliation is done: the position is handled normally again."""
    now = timezone.now()
    cleared = Position.objects.filter(pk=position.pk).exclude(attention="").update(
        attention="", updated_at=now)
    if cleared:
        position.attention = ""
        _record_event(position, kind="reconciled", reason=reason, actor=actor, at=now)
    return bool(cleared)


def realised_pnl(*, side: str, entry_price: Decimal, quantity: Decimal, exit_value: Decimal,
                 fees: Decimal) -> Decimal:
    """PnL of closing ``quantity`` bought/sold at ``entry_price`` for ``exit_value``, net of fees."""
    gross = exit_value - entry_price * quantity
    return (gross if side == PositionSide.LONG else -gross) - fees


def _write_trade(position: Position, closed_at: datetime, *, exit_reason: str = "") -> Trade:
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
        exit_reason=exit_reason or position.close_reason or CloseReason.SIGNAL)


# --- holding-time timeouts ---------------------------------------------------------

TIMEOUT_ACTOR = "timeout"
# Live events of a bulk transition carry at most this many position ids each.
LIVE_BATCH_SIZE = 1000


@dataclass(frozen=True)
class TimeoutPassResult:
    """What one timeout pass did."""

    checked_at: datetime
    warned: int
    timed_out: int
    close_actions: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checked_at": self.checked_at.isoformat()}


def timeout_pass_run(now: datetime | None = None) -> TimeoutPassResult:
    """Move held positions forward by holding time and queue timeout closes.

    Set-based, in a constant number of queries however many positions are open:
    OPEN → WARNING at each strategy's warning threshold, WARNING → CRITICAL at its
    max holding time (a position past both gets both transitions in one pass), then
    one emergency-close ``Action`` per CRITICAL position without an open close
    action when the strategy has ``enableAutomaticTimeout``. A position marked for
    attention (an exit fill it could not take) gets no close: it is handed to the
    reconciliation (``positions_need_reconcile``, after commit), which asks the
    exchange first.

    Safe on several workers at once: rows are locked in id order with SKIP LOCKED
    (a row another pass holds is left to it), each UPDATE re-checks the state and
    returns the rows it changed, events are written for exactly those rows, and
    actions rely on the partial unique constraint ``one_open_close_action_per_position``
    and a deterministic idempotency key.
    """
    now = now or timezone.now()
    limits = strategy_limits()
    if not limits:
        return TimeoutPassResult(now, 0, 0, 0)
    with transaction.atomic():
        warned = _advance_held_positions(now, S.OPEN, S.WARNING, limits)
        timed_out = _advance_held_positions(now, S.WARNING, S.CRITICAL, limits)
        created = _queue_timeout_closes(
            now, [pk for pk, strategy_limits in limits.items() if strategy_limits.automatic_timeout])
        flagged = list(Position.objects.filter(state__in=S.active()).exclude(attention="")
                       .order_by("pk").values_list("pk", flat=True))
        if flagged:
            transaction.on_commit(lambda: positions_need_reconcile.send(
                sender=Position, position_ids=flagged))
    return TimeoutPassResult(now, len(warned), len(timed_out), len(created))


def _advance_held_positions(now: datetime, from_state: str, to_state: str,
                            limits: dict[int, HoldingLimits]) -> list[int]:
    """One bulk step of the timeout pass; returns the ids of the positions it moved."""
    to_warning = to_state == S.WARNING
    groups = group_strategies(limits)
    due, reason, limit_minutes = Q(), [], []
    for group_limits, strategy_ids in groups.items():
        cutoff = group_limits.warning_cutoff(now) if to_warning else group_limits.timeout_cutoff(now)
        due |= Q(strategy_id__in=strategy_ids, opened_at__lte=cutoff)
        reason.append(When(strategy_id__in=strategy_ids,
                           then=Value(_timeout_reason(to_state, group_limits))))
        limit_minutes.append(When(strategy_id__in=strategy_ids,
                                  then=Value(_limit_minutes(to_state, group_limits))))
    locked = list(Position.objects.select_for_update(skip_locked=True, no_key=True)
                  .filter(due, state=from_state).order_by("pk").values_list("pk", flat=True))
    if not locked:
        return []
    transition_check(from_state, to_state)
    moved = sorted(update_returning_pks(
        Position.objects.filter(InArray("pk", locked), state=from_state),
        **transition_values(to_state, now)))
    if not moved:
        return []
    insert_select(PositionEvent, Position.objects.filter(InArray("pk", moved)).order_by("pk"), {
        "position_id": F("pk"), "kind": TRANSITION_EVENT, "from_state": from_state,
        "to_state": to_state, "actor": TIMEOUT_ACTOR, "created_at": now,
        "reason": Case(*reason, default=Value("timeout"), output_field=CharField()),
        "details": JSONObject(limit_minutes=Case(*limit_minutes, output_field=IntegerField())),
    })
    _announce_bulk_transition(moved, now, from_state, to_state, limits)
    return moved


def _limit_minutes(to_state: str, limits: HoldingLimits) -> int:
    return limits.warning_minutes if to_state == S.WARNING else limits.max_minutes


def _timeout_reason(to_state: str, limits: HoldingLimits) -> str:
    if to_state == S.WARNING:
        return f"timeout: warning threshold of {limits.warning_minutes} min reached"
    return f"timeout: max holding time of {limits.max_minutes} min reached"


def _announce_bulk_transition(position_ids: list[int], now: datetime, from_state: str,
                              to_state: str, limits: dict[int, HoldingLimits]) -> None:
    """Signal receivers get each position; the live layer gets batched id lists.

    Positions are loaded for the signal only when someone listens; the live events are
    the transition rule's (``transitions.live_many``).
    """
    if position_state_changed.has_listeners(Position):
        for position in Position.objects.filter(InArray("pk", position_ids)).select_related(
                "strategy").order_by("pk"):
            position_state_changed.send(sender=Position, position=position,
                                        from_state=from_state, to_state=to_state,
                                        reason=_timeout_reason(to_state,
                                                               limits[position.strategy_id]),
                                        actor=TIMEOUT_ACTOR)
    positions_moved.send(sender=Position, position_ids=position_ids, from_state=from_state,
                         to_state=to_state, actor=TIMEOUT_ACTOR, at=now)
    broadcast_many(live_many(position_ids, from_state=from_state, to_state=to_state,
                             actor=TIMEOUT_ACTOR, at=now, batch_size=LIVE_BATCH_SIZE))


def _queue_timeout_closes(now: datetime, strategy_ids: list[int]) -> list[tuple[int, int]]:
    """One emergency close per CRITICAL position that has no open close action.

    A position whose earlier close ended without closing it (failed, rejected,
    cancelled) gets a new one once ``timeouts.close_retry_delay`` has passed since
    that close ended. Returns ``(action_id, position_id)`` of the actions created.
    """
    if not strategy_ids:
        return []
    closing = Q(actions__kind__in=ActionKind.closing())
    retry_cutoff = Case(
        *[When(previous_closes=n, then=Value(now - delay)) for n, delay in close_retry_schedule()],
        default=Value(now - CLOSE_RETRY_MAX), output_field=DateTimeField())
    candidates = (
        Position.objects.filter(state=S.CRITICAL, strategy_id__in=strategy_ids, attention="")
        .annotate(open_closes=Count("actions", filter=closing & Q(
                      actions__state__in=ActionState.open())),
                  previous_closes=Count("actions", filter=closing),
                  last_close_ended=Max(Coalesce("actions__finished_at", "actions__updated_at"),
                                       filter=closing))
        .filter(Q(previous_closes=0) | Q(open_closes=0, last_close_ended__lte=retry_cutoff))
        .order_by("pk"))
    created = insert_select(Action, candidates, {
        "kind": ActionKind.EMERGENCY_CLOSE, "position_id": F("pk"), "reason": CloseReason.TIMEOUT,
        "requested_by": TIMEOUT_ACTOR, "created_at": now, "updated_at": now,
        # Same key on every worker for the same attempt; a retry counts one more close.
        "idempotency_key": Concat(Value("timeout:"), Cast("pk", CharField()), Value(":"),
                                  Cast("previous_closes", CharField()), output_field=CharField()),
    }, ignore_conflicts=True, returning=("id", "position_id"))
    if not created:
        return []
    action_ids = [action_id for action_id, _ in created]
    insert_select(PositionEvent, Action.objects.filter(InArray("pk", action_ids)).order_by("pk"), {
        "position_id": F("position_id"), "kind": "close_requested", "actor": TIMEOUT_ACTOR,
        "reason": "timeout: close requested", "created_at": now,
        "details": JSONObject(action_id=F("pk"), kind=F("kind")),
    })
    actions_dispatch(action_ids)
    return created
