"""Holding-time rules as plain functions: limits, deadlines and the close-retry backoff.

No Django or ORM here: the service and the selectors feed these with each
strategy's lifecycle config and the clock, so the rules are tested on their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

# A timeout close that ended without closing the position (rejected, cancelled,
# failed for good) is queued again after 1, 2, 4, 8 and then every 15 minutes:
# soon enough that a transient exchange problem costs little holding time, slow
# enough that a permanently rejected close does not spin the action queue.
CLOSE_RETRY_BASE = timedelta(minutes=1)
CLOSE_RETRY_MAX = timedelta(minutes=15)


class LifecycleSettings(Protocol):
    max_holding_time_minutes: int
    warning_threshold_minutes: int
    enable_automatic_timeout: bool


@dataclass(frozen=True)
class HoldingLimits:
    """A strategy's holding-time limits, in minutes since the position opened."""

    warning_minutes: int
    max_minutes: int
    automatic_timeout: bool

    @classmethod
    def from_config(cls, lifecycle: LifecycleSettings) -> HoldingLimits:
        return cls(warning_minutes=lifecycle.warning_threshold_minutes,
                   max_minutes=lifecycle.max_holding_time_minutes,
                   automatic_timeout=lifecycle.enable_automatic_timeout)

    @property
    def warning_after(self) -> timedelta:
        return timedelta(minutes=self.warning_minutes)

    @property
    def timeout_after(self) -> timedelta:
        return timedelta(minutes=self.max_minutes)

    def warning_cutoff(self, now: datetime) -> datetime:
        """Positions opened at or before this instant have reached the warning threshold."""
        return now - self.warning_after

    def timeout_cutoff(self, now: datetime) -> datetime:
        """Positions opened at or before this instant have reached the max holding time."""
        return now - self.timeout_after


def group_strategies(limits: Mapping[int, HoldingLimits]) -> dict[HoldingLimits, list[int]]:
    """Strategy ids sharing the same limits, so one SQL condition covers each group."""
    groups: dict[HoldingLimits, list[int]] = defaultdict(list)
    for strategy_id, strategy_limits in sorted(limits.items()):
        groups[strategy_limits].append(strategy_id)
    return dict(groups)


def minutes_between(start: datetime, end: datetime) -> float:
    """Signed minutes from ``start`` to ``end``, rounded to 0.1 for display."""
    return round((end - start).total_seconds() / 60, 1)


def close_retry_delay(previous_closes: int) -> timedelta:
    """How long after the last close attempt ended a new timeout close may be queued."""
    if previous_closes <= 0:
        return timedelta(0)
    doublings = min(previous_closes - 1, 16)  # 2**16 minutes is long past the cap
    return min(CLOSE_RETRY_BASE * 2 ** doublings, CLOSE_RETRY_MAX)


def close_retry_schedule() -> list[tuple[int, timedelta]]:
    """``(previous closes, delay)`` for every count whose delay is below the cap."""
    schedule, previous = [], 1
    while (delay := close_retry_delay(previous)) < CLOSE_RETRY_MAX:
        schedule.append((previous, delay))
        previous += 1
    return schedule


def chunked(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
