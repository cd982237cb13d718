"""The one danger level an operator reads: a position's health and its lifecycle state together.

The risk monitor scores health (``Position.danger_level`` holds the level of the last
score); the timeout pass moves the lifecycle state. Shown apart they disagree — a
position three minutes before its forced close, in state WARNING, scoring SAFE — so
the dashboard, the API and the commands show this combination instead:

* a CLOSED position has no danger level (``""``): it is no longer held;
* otherwise the more severe of the health level and the state's floor, where the
  floor is CRITICAL for CRITICAL (timed out), WARNING for WARNING (past the warning
  threshold) and CLOSING (its close is in flight), and nothing for OPEN;
* an OPEN position that was never scored has no level (``""``, shown as unscored).

So a WARNING, CRITICAL or CLOSING position is never SAFE. ``position_danger_level``
is the rule; ``danger_level_expression`` is the same rule in SQL, for filters and
counts.
"""

from __future__ import annotations

from django.db.models import Case, CharField, Q, Value, When

from lifecycle.models import DangerLevel, PositionState

SEVERITY = (DangerLevel.SAFE, DangerLevel.WARNING, DangerLevel.CRITICAL)  # mildest first
STATE_FLOOR = {
    PositionState.OPEN: "",
    PositionState.WARNING: DangerLevel.WARNING,
    PositionState.CRITICAL: DangerLevel.CRITICAL,
    PositionState.CLOSING: DangerLevel.WARNING,
}


def position_danger_level(state: str, health_level: str) -> str:
    """The danger level of a position in ``state`` whose last health check said ``health_level``.

    ``health_level`` is ``""`` before the first check. Returns SAFE, WARNING, CRITICAL, or
    ``""`` for a closed position or an open one not scored yet.
    """
    if state not in STATE_FLOOR:  # CLOSED (or a state this rule does not know)
        return ""
    levels = [level for level in (STATE_FLOOR[state], health_level) if level in SEVERITY]
    return str(max(levels, key=SEVERITY.index)) if levels else ""


def danger_level_expression() -> Case:
    """``position_danger_level`` as an SQL expression over a position's columns."""
    def floor_at_least(level: str) -> Q:
        states = [s for s, floor in STATE_FLOOR.items()
                  if floor and SEVERITY.index(floor) >= SEVERITY.index(level)]
        return Q(state__in=states)

    held = Q(state__in=list(STATE_FLOOR))
    whens = [When(held & (floor_at_least(level) | Q(danger_level=level)), then=Value(str(level)))
             for level in reversed(SEVERITY)]
    return Case(*whens, default=Value(""), output_field=CharField())
