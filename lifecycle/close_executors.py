"""Who carries out a position's close: the order pipeline, unless the position's owner says.

Every close — timeout, risk monitor, operator, guard, shutdown — is one close action
(``position_request_close``), run by the action queue (``execution.services``). By
default the queue closes with a reduce-only order through the pipeline. A position
owned by something that keeps its own books (a trading bot that handed it over,
``PositionSource.BOT``) must be closed *by that owner*, or the owner would still
believe it holds the position. Such an owner registers a close executor for its
source, from its ``AppConfig.ready()``::

    register_close_executor(PositionSource.BOT, bot_close)

The action queue calls ``executor(action, position)`` before it records any order
of its own for the action. The executor returns True when it took the close in hand
(the action stays running until the owner confirms; the executor may move the
action's lease to when it wants to look again) or False to let the pipeline close
the position with its own order, now (e.g. the owner did not confirm in time).

This is the only seam between lifecycle's closes and the apps above it: lifecycle
imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lifecycle.models import Position, PositionSource

# (action, position) -> True: the owner closes it; False: the pipeline closes it now.
CloseExecutor = Callable[[Any, Position], bool]

_executors: dict[str, CloseExecutor] = {}


def register_close_executor(source: str, executor: CloseExecutor) -> None:
    """Close the positions of ``source`` through ``executor`` (one executor per source)."""
    if source not in PositionSource.values:
        raise ValueError(f"source must be one of {PositionSource.values}, got {source!r}")
    registered = _executors.get(source)
    if registered is not None and registered is not executor:
        raise ValueError(f"positions of source {source!r} already close through {registered!r}")
    _executors[source] = executor


def close_executor_for(position: Position) -> CloseExecutor | None:
    """The executor registered for the position's source; ``None``: the pipeline closes it."""
    return _executors.get(position.source)
