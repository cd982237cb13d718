"""Calendar periods and local days (pure)."""

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from analytics.periods import (
    Period,
    Window,
    day_bounds,
    from_micros,
    intersect,
    period_window,
    to_micros,
)

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.mark.parametrize(("period", "start", "end"), [
    (Period.TODAY, berlin(2026, 3, 18), berlin(2026, 3, 19)),
    (Period.WEEK, berlin(2026, 3, 16), berlin(2026, 3, 23)),   # Monday to Monday
    (Period.MONTH, berlin(2026, 3, 1), berlin(2026, 4, 1)),
    (Period.ALL, None, None),
])
def test_calendar_windows_in_the_time_zone(period, start, end):
    now = berlin(2026, 3, 18, 0, 30).astimezone(UTC)  # Tuesday 23:30 UTC
    assert period_window(period, now, BERLIN) == Window(start, end)


def test_week_of_a_sunday_started_on_monday():
    assert period_window("WEEK", berlin(2026, 3, 22, 23, 59, 59), BERLIN).start == berlin(
        2026, 3, 16)


def test_month_window_rolls_over_the_year():
    window = period_window(Period.MONTH, berlin(2026, 12, 31, 12), BERLIN)
    assert window == Window(berlin(2026, 12, 1), berlin(2027, 1, 1))


def test_windows_are_half_open():
    window = period_window(Period.TODAY, berlin(2026, 3, 18, 12), BERLIN)
    assert window.contains(berlin(2026, 3, 18, 0, 0, 0))
    assert window.contains(berlin(2026, 3, 18, 23, 59, 59))
    assert not window.contains(berlin(2026, 3, 17, 23, 59, 59))
    assert not window.contains(berlin(2026, 3, 19, 0, 0, 0))


def test_explicit_start_and_end_narrow_the_period():
    month = period_window(Period.MONTH, berlin(2026, 3, 18), BERLIN)
    assert intersect(month, berlin(2026, 2, 1), berlin(2026, 3, 10)) == Window(
        berlin(2026, 3, 1), berlin(2026, 3, 10))
    assert intersect(Window(None, None), None, berlin(2026, 1, 1)) == Window(
        None, berlin(2026, 1, 1))


def test_day_bounds_follow_daylight_saving_time():
    # Berlin moves to summer time on 2026-03-29: that day has 23 hours.
    bounds = day_bounds(berlin(2026, 3, 28), berlin(2026, 3, 31), BERLIN)
    hours = [(b - a) / 3_600_000_000 for a, b in itertools.pairwise(bounds)]
    assert hours == [24, 23, 24]


def test_day_bounds_of_partial_days():
    bounds = day_bounds(berlin(2026, 3, 28, 15), berlin(2026, 3, 29, 6), BERLIN)
    assert [from_micros(b) for b in bounds] == [
        berlin(2026, 3, 28, 15), berlin(2026, 3, 29), berlin(2026, 3, 29, 6)]
    assert len(day_bounds(berlin(2026, 3, 28), berlin(2026, 3, 28), BERLIN)) == 0


def test_micros_round_trip():
    moment = datetime(2026, 3, 28, 15, 4, 5, 123456, tzinfo=UTC)
    assert from_micros(to_micros(moment)) == moment
    assert to_micros(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=-1)) == -1
