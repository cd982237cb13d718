"""The pure holding-time rules (no database)."""

from datetime import UTC, datetime, timedelta

from lifecycle.timeouts import (
    CLOSE_RETRY_MAX,
    HoldingLimits,
    chunked,
    close_retry_delay,
    close_retry_schedule,
    group_strategies,
    minutes_between,
)
from tradingsite.live_config import LifecycleConfig

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_limits_come_from_the_lifecycle_config_and_give_cutoffs():
    limits = HoldingLimits.from_config(LifecycleConfig())
    assert limits == HoldingLimits(warning_minutes=180, max_minutes=240, automatic_timeout=True)
    assert limits.warning_cutoff(NOW) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert limits.timeout_cutoff(NOW) == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_strategies_with_the_same_limits_share_one_group():
    default = HoldingLimits(180, 240, True)
    fast = HoldingLimits(60, 90, True)
    assert group_strategies({3: default, 1: fast, 2: default}) == {fast: [1], default: [2, 3]}


def test_the_close_retry_backoff_doubles_up_to_fifteen_minutes():
    assert [close_retry_delay(n) for n in range(7)] == [
        timedelta(0), timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4),
        timedelta(minutes=8), timedelta(minutes=15), timedelta(minutes=15)]
    assert close_retry_schedule() == [(1, timedelta(minutes=1)), (2, timedelta(minutes=2)),
                                      (3, timedelta(minutes=4)), (4, timedelta(minutes=8))]
    assert close_retry_delay(50) == CLOSE_RETRY_MAX


def test_minutes_between_is_signed_and_rounded():
    assert minutes_between(NOW, NOW + timedelta(seconds=90)) == 1.5
    assert minutes_between(NOW, NOW - timedelta(seconds=20)) == -0.3


def test_chunked_keeps_order_and_the_remainder():
    assert list(chunked([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
