"""Reads about positions under supervision: holding limits, deadlines, counts.

The API, the management commands, the admin and the dashboard all read through
these, so "minutes to timeout" means the same everywhere. Deadlines are SQL
annotations computed from each strategy's effective config (one CASE over the
strategies sharing the same limits), so a list stays one query however many
strategies there are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from execution.models import Action, ActionKind, ExchangeAccount
from lifecycle.models import Position, PositionState, Strategy
from lifecycle.timeouts import HoldingLimits, group_strategies, minutes_between
from tradingsite.live_config import LiveConfigError, LiveTradingConfig, site_config

log = logging.getLogger(__name__)

TIMEOUT_STATES = [PositionState.WARNING, PositionState.CRITICAL, PositionState.CLOSING]


def site_limits() -> HoldingLimits:
    """The platform-wide limits, for strategies without lifecycle overrides.

    Start-up refuses an invalid site config; if one appears while running (a file
    edited behind the platform's back), the defaults apply: timeouts never stop.
    """
    try:
        return HoldingLimits.from_config(site_config().lifecycle)
    except LiveConfigError as exc:
        log.error("invalid site live-trading config (%s); using the default holding limits", exc)
        return HoldingLimits.from_config(LiveTradingConfig().lifecycle)


def limits_of(strategy: Strategy) -> HoldingLimits:
    """A strategy's limits; invalid overrides fall back to the site limits (and say so).

    Start-up checks refuse invalid overrides, so this only happens when a row was
    edited behind the platform's back; a timeout must still apply then.
    """
    try:
        return HoldingLimits.from_config(strategy.effective_config().lifecycle)
    except LiveConfigError as exc:
        log.error("strategy %s: invalid live-trading overrides (%s); using the site limits",
                  strategy.name, exc)
        return site_limits()


def strategy_limits() -> dict[int, HoldingLimits]:
    """The holding limits of every strategy, keyed by id (one query)."""
    return {s.pk: limits_of(s) for s in Strategy.objects.only("id", "name", "live_trading")}


def _deadline(groups: dict[HoldingLimits, list[int]], attr: str, default: HoldingLimits):
    def after(limits: HoldingLimits) -> ExpressionWrapper:
        return ExpressionWrapper(
            F("opened_at") + Value(getattr(limits, attr), output_field=DurationField()),
            output_field=DateTimeField())

    whens = [When(strategy_id__in=ids, then=after(limits))
             for limits, ids in groups.items() if limits != default]
    if not whens:
        return after(default)
    return Case(*whens, default=after(default), output_field=DateTimeField())


def with_deadlines(queryset: QuerySet[Position],
                   limits: dict[int, HoldingLimits] | None = None) -> QuerySet[Position]:
    """Annotate ``warning_due_at`` and ``timeout_due_at`` from each strategy's limits."""
    limits = strategy_limits() if limits is None else limits
    groups = group_strategies(limits)
    default = site_limits()
    return queryset.annotate(warning_due_at=_deadline(groups, "warning_after", default),
                             timeout_due_at=_deadline(groups, "timeout_after", default))


def with_close_action(queryset: QuerySet[Position]) -> QuerySet[Position]:
    """Annotate the latest close action of each position (id and state), if any."""
    latest = Action.objects.filter(position=OuterRef("pk"), kind__in=ActionKind.closing()
                                   ).order_by("-created_at", "-id")
    return queryset.annotate(close_action_id=Subquery(latest.values("id")[:1]),
                             close_action_state=Subquery(latest.values("state")[:1]))


def tracked_positions(*, states: list[str] | None = None, strategy: str | None = None,
                      symbol: str | None = None,
                      limits: dict[int, HoldingLimits] | None = None) -> QuerySet[Position]:
    """Positions under supervision (default: still held), most urgent deadline first."""
    queryset = Position.objects.filter(state__in=states or PositionState.active())
    if strategy:
        queryset = queryset.filter(strategy__name=strategy)
    if symbol:
        queryset = queryset.filter(symbol=symbol)
    queryset = with_close_action(with_deadlines(queryset.select_related("strategy"), limits))
    return queryset.order_by("timeout_due_at", "id")


def timeout_positions(*, limits: dict[int, HoldingLimits] | None = None) -> QuerySet[Position]:
    """Positions past their warning threshold or being closed, the most overdue first."""
    return tracked_positions(states=TIMEOUT_STATES, limits=limits)


def position_state_counts(states: list[str] | None = None) -> dict[str, int]:
    """How many positions are in each state (zeros included), in one query."""
    states = states or PositionState.active()
    rows = (Position.objects.filter(state__in=states).values("state")
            .annotate(n=Count("id")).order_by())
    found = {row["state"]: row["n"] for row in rows}
    return {state: found.get(state, 0) for state in states}


@dataclass(frozen=True)
class PositionTiming:
    """Signed minutes of a position against its deadlines (negative: still ahead)."""

    age_minutes: float
    minutes_to_warning: float | None
    minutes_to_timeout: float | None

    @property
    def minutes_past_warning(self) -> float | None:
        return None if self.minutes_to_warning is None else -self.minutes_to_warning

    @property
    def minutes_past_timeout(self) -> float | None:
        return None if self.minutes_to_timeout is None else -self.minutes_to_timeout


def position_timing(position: Position, now: datetime | None = None) -> PositionTiming:
    """Age and countdowns of a position annotated by ``with_deadlines``.

    A closed position has an age (its holding time) and no countdowns.
    """
    now = now or timezone.now()
    age = minutes_between(position.opened_at, position.closed_at or now)
    if position.state == PositionState.CLOSED:
        return PositionTiming(age, None, None)
    return PositionTiming(age, minutes_between(now, position.warning_due_at),
                          minutes_between(now, position.timeout_due_at))


def with_timing(positions: Iterable[Position], now: datetime | None = None) -> list[Position]:
    """Attach ``timing`` (a ``PositionTiming``) to positions annotated by ``with_deadlines``."""
    now = now or timezone.now()
    annotated = list(positions)
    for position in annotated:
        position.timing = position_timing(position, now)
    return annotated


def markets_in_use() -> list[tuple[ExchangeAccount, str, str]]:
    """(account, symbol, timeframe) of every position still held, once each."""
    seen: dict[tuple[int, str, str], tuple[ExchangeAccount, str, str]] = {}
    positions = Position.objects.filter(state__in=PositionState.active(),
                                        strategy__account__enabled=True).select_related(
        "strategy__account").only("symbol", "strategy__timeframe", "strategy__account")
    for position in positions:
        account = position.strategy.account
        key = (account.pk, position.symbol, position.strategy.timeframe)
        seen.setdefault(key, (account, position.symbol, position.strategy.timeframe))
    return list(seen.values())
