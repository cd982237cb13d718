"""Reads of the guard: every scope with its state and the distance to each limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from guard.equity import plain
from guard.gate import RATE_WINDOW_SECONDS
from guard.limits import ScopeLimits, scope_limits
from guard.models import GuardTrip, OrderRefusal, ScopeKind, ScopeLedger, TradingScope
from guard.services import loss_figures, scope_rows_ensure
from tradingsite.live_config import snake_to_camel

PERCENT = Decimal("0.01")
UNITS = {"daily_loss_limit_amount": "quote", "daily_loss_limit_percent": "%",
         "max_drawdown_percent": "%", "max_open_positions": "positions",
         "max_exposure_percent": "%", "max_symbol_exposure_percent": "%",
         "max_notional_per_order": "quote", "max_orders_per_minute": "entries / 60 s"}


@dataclass(frozen=True)
class LimitDistance:
    """One limit of a scope: where the scope stands against it."""

    key: str
    unit: str
    limit: Decimal | None  # None: off
    value: Decimal | None  # None: nothing to measure (per order, or no equity yet)
    detail: str = ""

    @property
    def remaining(self) -> Decimal | None:
        return None if self.limit is None or self.value is None else self.limit - self.value

    @property
    def used_percent(self) -> Decimal | None:
        if self.limit is None or self.value is None or self.limit <= 0:
            return None
        return max(self.value / self.limit * 100, Decimal(0)).quantize(PERCENT)


def _number(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _percent(part: Decimal, whole: Decimal | None) -> Decimal | None:
    return (part / whole * 100).quantize(PERCENT) if whole and whole > 0 else None


def limit_distances(scope: TradingScope, limits: ScopeLimits, ledger: ScopeLedger | None,
                    now: datetime) -> list[LimitDistance]:
    """Each limit that applies to the scope (configured or off) with the scope's figure."""
    losses = loss_figures(scope)
    held = ledger or ScopeLedger(scope=scope)
    symbols = {symbol: Decimal(value) for symbol, value in held.symbol_exposure.items()}
    top = max(symbols.items(), key=lambda item: item[1], default=None)
    recent = [at for at in held.recent_entries if at > now.timestamp() - RATE_WINDOW_SECONDS]
    values = {
        "daily_loss_limit_amount": (losses["loss"], ""),
        "daily_loss_limit_percent": (losses["loss_percent"], ""),
        "max_drawdown_percent": (losses["drawdown_percent"], ""),
        "max_open_positions": (Decimal(held.open_positions), "held or on their way"),
        "max_exposure_percent": (_percent(held.exposure, scope.equity),
                                 f"exposure {plain(held.exposure.quantize(PERCENT))}"),
        "max_symbol_exposure_percent": (
            _percent(top[1], scope.equity) if top else Decimal(0), top[0] if top else ""),
        "max_notional_per_order": (None, "checked per order"),
        "max_orders_per_minute": (Decimal(len(recent)), "entries in the last 60 s"),
    }
    return [LimitDistance(key=snake_to_camel(key), unit=UNITS[key], limit=_number(limit),
                          value=values[key][0], detail=values[key][1])
            for key, limit in limits.configured().items()]


def _age(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else round((now - at).total_seconds(), 1)


def scopes_overview(*, now: datetime | None = None,
                    only: TradingScope | None = None) -> list[dict[str, Any]]:
    """Every scope (or ``only``): state, who, since, why, its trip, equity and limits."""
    now = now or timezone.now()
    scope_rows_ensure(every=only is None)
    scopes = TradingScope.objects.select_related("account", "strategy", "ledger")
    if only is not None:
        scopes = scopes.filter(pk=only.pk)
    trips = {trip.scope_id: trip for trip in GuardTrip.objects.filter(rearmed_at__isnull=True)}
    out = []
    for scope in scopes.order_by("level", "id"):
        limits = scope_limits(scope)
        ledger = getattr(scope, "ledger", None)
        trip = trips.get(scope.pk)
        equity_scope = scope.kind != ScopeKind.STRATEGY
        out.append({
            "scope": scope.label, "kind": scope.kind, "name": scope.name, "state": scope.state,
            "reason": scope.state_reason, "by": scope.state_by, "since": scope.state_since,
            "trip": None if trip is None else trip_payload(trip),
            "equity": scope.equity if equity_scope else None,
            "equity_at": scope.equity_at if equity_scope else None,
            "equity_age_seconds": _age(scope.equity_at, now) if equity_scope else None,
            "marks_as_of": scope.marks_as_of if equity_scope else None,
            "marks_age_seconds": _age(scope.marks_as_of, now) if equity_scope else None,
            "unmarked_positions": scope.unmarked_positions,
            "day": scope.day if equity_scope else None,
            "day_start_equity": scope.day_start_equity if equity_scope else None,
            "peak_equity": scope.peak_equity if equity_scope else None,
            "counted_at": ledger.exact_at if ledger else None,
            "on_trip": limits.on_trip if equity_scope else None,
            "close_all_on_trip": limits.close_all_on_trip if equity_scope else None,
            "limits": [{"key": d.key, "unit": d.unit, "limit": d.limit, "value": d.value,
                        "remaining": d.remaining, "used_percent": d.used_percent,
                        "detail": d.detail}
                       for d in limit_distances(scope, limits, ledger, now)],
        })
    return out


def trip_payload(trip: GuardTrip) -> dict[str, Any]:
    return {"id": trip.pk, "scope": trip.scope.label, "code": trip.code,
            "tripped_at": trip.tripped_at, "message": trip.message, "numbers": trip.numbers,
            "state_before": trip.state_before, "state_after": trip.state_after,
            "close_all": trip.close_all, "closes_requested": trip.closes_requested,
            "rearmed_at": trip.rearmed_at, "rearmed_by": trip.rearmed_by,
            "rearm_reason": trip.rearm_reason}


def scope_named(label: str, *, prefix: str = "") -> Q:
    """Rows of the scope ``label`` (``global``, ``account:NAME``, ``strategy:NAME``); a label
    of no known form matches nothing."""
    kind, _, name = label.partition(":")
    if kind == ScopeKind.GLOBAL and not name:
        return Q(**{f"{prefix}kind": kind})
    if kind in (ScopeKind.ACCOUNT, ScopeKind.STRATEGY) and name:
        return Q(**{f"{prefix}kind": kind, f"{prefix}{kind}__name": name})
    return Q(pk__in=[])


def trips() -> QuerySet[GuardTrip]:
    """The trip history, newest first."""
    return GuardTrip.objects.select_related("scope__account", "scope__strategy").order_by(
        "-tripped_at", "-id")


def guard_overview() -> dict[str, Any]:
    """Every scope, the last 20 trips and the last 20 refused orders (``GET /api/guard/``)."""
    return {"scopes": scopes_overview(),
            "recent_trips": [trip_payload(trip) for trip in trips()[:20]],
            "recent_refusals": list(refusals()[:20])}


def refusals() -> QuerySet[OrderRefusal]:
    return OrderRefusal.objects.select_related("account", "strategy").order_by("-created_at",
                                                                                "-id")
