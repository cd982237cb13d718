"""Reads behind the operator surfaces (dashboard and generic API): querysets to show.

Writes stay in the apps' services; this module only shapes what an operator looks at.
"""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from execution.models import Action, Order
from lifecycle.models import Position, PositionEvent, PositionState, Strategy
from lifecycle.selectors import with_close_action, with_deadlines
from risk.models import HealthSnapshot, RiskAlert
from risk.selectors import alerts_with_symbol

HEALTH_HISTORY_LIMIT = 500
DASHBOARD_ALERT_LIMIT = 50


def latest_health(position: Position) -> HealthSnapshot | None:
    """The newest health check, from the prefetch of ``positions_with_health`` when present."""
    prefetched = getattr(position, "latest_health_list", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return position.health_snapshots.order_by("-taken_at", "-id").first()


def positions_with_health() -> QuerySet[Position]:
    """Positions with lifecycle's deadlines and close action, their strategy and newest
    health snapshot (three queries for any number of positions)."""
    latest = HealthSnapshot.objects.order_by("-taken_at", "-id")[:1]
    positions = Position.objects.select_related("strategy__account").prefetch_related(
        Prefetch("health_snapshots", queryset=latest, to_attr="latest_health_list"))
    return with_close_action(with_deadlines(positions))


def open_positions() -> QuerySet[Position]:
    """Positions still held on the exchange, oldest first (the nearest timeout on top)."""
    return positions_with_health().filter(state__in=PositionState.active()).order_by(
        "opened_at", "id")


def position_detail(position_id: int) -> Position:
    """One position with its events; raises ``Position.DoesNotExist``."""
    return positions_with_health().prefetch_related(
        Prefetch("events", queryset=PositionEvent.objects.order_by("created_at", "id"))
    ).get(pk=position_id)


def position_health_history(position: Position,
                            limit: int = HEALTH_HISTORY_LIMIT) -> list[HealthSnapshot]:
    """The newest ``limit`` health checks of a position, oldest first (for a chart)."""
    newest = list(position.health_snapshots.order_by("-taken_at", "-id")[:limit])
    return newest[::-1]


def position_orders(position: Position) -> QuerySet[Order]:
    return position.orders.select_related("account", "strategy").order_by("created_at", "id")


def position_actions(position: Position) -> QuerySet[Action]:
    return position.actions.order_by("created_at", "id")


def strategies() -> QuerySet[Strategy]:
    return Strategy.objects.select_related("account")


def recent_alerts(limit: int = DASHBOARD_ALERT_LIMIT) -> QuerySet[RiskAlert]:
    """Unresolved alerts first, newest first: what the dashboard's feed starts with."""
    return alerts_with_symbol().filter(resolved_at__isnull=True).order_by(
        "-last_seen", "-id")[:limit]
