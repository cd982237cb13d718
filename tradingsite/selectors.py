"""Reads behind the operator surfaces (dashboard and generic API): querysets and timings.

Writes stay in the apps' services; this module only shapes what an operator looks at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from execution.models import Action, Order
from lifecycle.models import Position, PositionEvent, PositionState, Strategy
from risk.models import HealthSnapshot, RiskAlert
from risk.selectors import alerts_with_symbol

HEALTH_HISTORY_LIMIT = 500
DASHBOARD_ALERT_LIMIT = 50


@dataclass(frozen=True)
class PositionTimings:
    """When a position is due for WARNING and for its timeout, and how far it is from each."""

    warning_due_at: datetime
    timeout_at: datetime
    minutes_to_warning: float
    minutes_to_timeout: float


def position_timings(position: Position, now: datetime | None = None) -> PositionTimings:
    """Deadlines from the strategy's effective holding-time limits (negative minutes: overdue)."""
    now = now or timezone.now()
    limits = position.strategy.effective_config().lifecycle
    warning_due_at = position.opened_at + timedelta(minutes=limits.warning_threshold_minutes)
    timeout_at = position.opened_at + timedelta(minutes=limits.max_holding_time_minutes)
    return PositionTimings(
        warning_due_at=warning_due_at, timeout_at=timeout_at,
        minutes_to_warning=round((warning_due_at - now).total_seconds() / 60, 2),
        minutes_to_timeout=round((timeout_at - now).total_seconds() / 60, 2))


def latest_health(position: Position) -> HealthSnapshot | None:
    """The newest health check, from the prefetch of ``positions_with_health`` when present."""
    prefetched = getattr(position, "latest_health_list", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return position.health_snapshots.order_by("-taken_at", "-id").first()


def positions_with_health() -> QuerySet[Position]:
    """Positions with their strategy and newest health snapshot loaded in two queries."""
    latest = HealthSnapshot.objects.order_by("-taken_at", "-id")[:1]
    return Position.objects.select_related("strategy__account").prefetch_related(
        Prefetch("health_snapshots", queryset=latest, to_attr="latest_health_list"))


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
