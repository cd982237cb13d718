"""Calendar periods and day boundaries in a time zone (stdlib only, no Django).

A report period is a calendar period in the configured time zone
(``settings.TIME_ZONE``), not a rolling window:

- ``TODAY``: from local midnight today;
- ``WEEK``: from local midnight of this week's Monday (ISO weeks start on Monday);
- ``MONTH``: from local midnight of the 1st of this month;
- ``ALL``: no lower bound.

Each ends at the start of the next period (exclusive). A trade closed at 23:59:59
local time belongs to that day; one closed at 00:00:00 belongs to the next.
Explicit ``start``/``end`` narrow the window further (start inclusive, end exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000


class Period(StrEnum):
    ALL = "ALL"
    TODAY = "TODAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)``; ``None`` means unbounded."""

    start: datetime | None
    end: datetime | None

    def contains(self, moment: datetime) -> bool:
        return ((self.start is None or moment >= self.start)
                and (self.end is None or moment < self.end))


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The aware instant at which ``day`` starts in ``tz``."""
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def period_window(period: Period | str, now: datetime, tz: tzinfo) -> Window:
    """The calendar window of ``period`` that contains ``now``, in ``tz``."""
    period = Period(period)
    if period is Period.ALL:
        return Window(None, None)
    today = now.astimezone(tz).date()
    if period is Period.TODAY:
        first, after = today, today + timedelta(days=1)
    elif period is Period.WEEK:
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return Window(local_midnight(first, tz), local_midnight(after, tz))


def intersect(window: Window, start: datetime | None, end: datetime | None) -> Window:
    """``window`` narrowed by an explicit ``start``/``end``."""
    lo = max((d for d in (window.start, start) if d is not None), default=None)
    hi = min((d for d in (window.end, end) if d is not None), default=None)
    return Window(lo, hi)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (UTC) of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


def day_bounds(start: datetime, end: datetime, tz: tzinfo) -> np.ndarray:
    """Boundaries of the local calendar days covering ``[start, end)``, in epoch µs.

    Returns ``[start, midnight_1, …, midnight_k, end]``: ``len - 1`` days, the first
    and last possibly partial. Empty when ``end <= start``.
    """
    if end <= start:
        return np.empty(0, dtype=np.int64)
    bounds = [to_micros(start)]
    day = start.astimezone(tz).date() + timedelta(days=1)
    while True:
        midnight = local_midnight(day, tz)
        if midnight >= end:
            break
        bounds.append(to_micros(midnight))
        day += timedelta(days=1)
    bounds.append(to_micros(end))
    return np.asarray(bounds, dtype=np.int64)
