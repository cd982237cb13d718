"""Reads of the bots app: connection health for the admin, the dashboard and ``/healthz``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from bots.models import BotConnection, BotState
from bots.services import bots_config
from lifecycle.models import PositionState

# A connection not synced for this many sync periods is unhealthy (beat or workers stopped).
SYNC_PERIODS_LATE = 3


def connections_with_positions() -> QuerySet[BotConnection]:
    """Connections with their strategy and the number of positions they hold open."""
    return BotConnection.objects.select_related("strategy").annotate(
        open_positions=Count("trades", filter=Q(
            trades__position__state__in=PositionState.active()))).order_by("name")


def connection_problems(connection: BotConnection, now: datetime) -> list[str]:
    """Why a connection is not healthy (empty: it is), in words an operator acts on."""
    if not connection.enabled:
        return []
    problems = []
    if connection.bot_state in BotState.down():
        problems.append(f"bot {connection.get_bot_state_display().lower()}")
    every = bots_config(connection).bot_sync_seconds
    if connection.last_sync_at is None:
        problems.append("never synced")
    elif (now - connection.last_sync_at).total_seconds() > SYNC_PERIODS_LATE * every:
        minutes = (now - connection.last_sync_at).total_seconds() / 60
        problems.append(f"last synced {minutes:.0f} min ago (every {every:g} s)")
    if connection.last_sync_error:
        problems.append(f"sync: {connection.last_sync_error[:200]}")
    return problems


def connection_health(connection: BotConnection, now: datetime | None = None) -> dict[str, Any]:
    """One connection's health as the API, the dashboard and ``/healthz`` show it."""
    now = now or timezone.now()
    problems = connection_problems(connection, now)
    return {
        "name": connection.name, "kind": connection.kind,
        "strategy": connection.strategy.name, "enabled": connection.enabled,
        "healthy": not problems, "problems": problems,
        "bot_state": connection.bot_state, "bot_state_at": connection.bot_state_at,
        "last_webhook_at": connection.last_webhook_at,
        "last_webhook_event": connection.last_webhook_event,
        "last_sync_at": connection.last_sync_at,
        "open_positions": getattr(connection, "open_positions", None),
    }


def bot_connections_health(now: datetime | None = None) -> dict[str, Any]:
    """Health of every bot connection, for ``/healthz``.

    ``{"ok": bool, "connections": [{name, healthy, problems, bot_state, last_webhook_at,
    last_sync_at, …}]}``; ``ok`` is False when an enabled connection's bot is stopped,
    died or unreachable, or it was not synced for ``SYNC_PERIODS_LATE`` periods of
    ``bots.botSyncSeconds``. No connections: ok.
    """
    now = now or timezone.now()
    rows = [connection_health(c, now) for c in connections_with_positions()]
    return {"ok": all(row["healthy"] for row in rows), "checked_at": now, "connections": rows}
