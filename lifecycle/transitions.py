"""The one transition rule of a position: where it may go, what is written, what is pushed.

Both paths use these definitions: ``position_transition`` (one position, a
compare-and-set on its row) and the timeout pass's bulk step (many positions, one
``UPDATE … RETURNING``). Each checks ``transition_check``, writes
``transition_values``, records a ``PositionEvent`` of kind ``TRANSITION_EVENT`` and
pushes ``LIVE_EVENT`` — for one position its full payload (``live_one``), for many the
same change as batches of ids (``live_many``, event ``LIVE_EVENT_MANY``: the dashboard
knows the rest, so a pass over 10,000 positions stays cheap).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lifecycle.models import PositionState
from lifecycle.timeouts import chunked
from tradingsite.errors import InvalidStateTransition

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

TRANSITION_EVENT = "transition"  # PositionEvent.kind of every state change
LIVE_EVENT = "position.state_changed"  # one position, its whole payload
LIVE_EVENT_MANY = "positions.state_changed"  # the same change for many positions, their ids


def is_allowed(from_state: str, to_state: str) -> bool:
    return to_state in ALLOWED_TRANSITIONS.get(from_state, frozenset())


def transition_check(from_state: str, to_state: str, *, position_id: int | None = None) -> None:
    """Raise ``InvalidStateTransition`` unless ``from_state → to_state`` is allowed."""
    if not is_allowed(from_state, to_state):
        subject = f"position {position_id}" if position_id is not None else "positions"
        raise InvalidStateTransition(
            f"{subject}: {from_state} → {to_state} is not a valid transition")


def transition_values(to_state: str, now: datetime, **fields: Any) -> dict[str, Any]:
    """The columns a transition writes: the state, when it changed, the state's timestamp."""
    values: dict[str, Any] = {"state": to_state, "state_changed_at": now, "updated_at": now,
                              **fields}
    if to_state in STATE_TIMESTAMP:
        values.setdefault(STATE_TIMESTAMP[to_state], now)
    return values


def live_one(payload: dict[str, Any], *, from_state: str, reason: str) -> tuple[str, dict]:
    """The live event of one position's transition (``payload``: ``position_payload``)."""
    return LIVE_EVENT, {**payload, "from_state": from_state, "reason": reason}


def live_many(position_ids: Sequence[int], *, from_state: str, to_state: str, actor: str,
              at: datetime, batch_size: int) -> list[tuple[str, dict]]:
    """The live events of one bulk transition: at most ``batch_size`` ids each."""
    return [(LIVE_EVENT_MANY, {"ids": batch, "from_state": from_state, "to_state": to_state,
                               "actor": actor, "state_changed_at": at})
            for batch in chunked(list(position_ids), batch_size)]
