"""Set-based writes (risk/bulk.py) give the same rows as the ORM, on SQLite and PostgreSQL."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from risk.models import HealthSnapshot, RiskAlert
from risk.tests.conftest import NOW, open_position
from tradingsite.sql import insert_rows, update_rows
from tradingsite.testing.factories import RiskAlertFactory

pytestmark = pytest.mark.django_db

AWKWARD = 'a "quoted" \\ back\\slash, {braces}, commas,\ttab\nnewline — ünïcode NULL'


def test_update_rows_writes_each_rows_own_values(frozen, risk_strategy):
    first, second = (RiskAlertFactory(position=open_position(risk_strategy)) for _ in "ab")
    changed = update_rows(RiskAlert, ("message", "occurrences", "resolved_at", "acknowledged"),
                          [(first.pk, AWKWARD, 7, NOW + timedelta(minutes=1), True),
                           (second.pk, "NULL", 2, None, False)])
    assert changed == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.message, first.occurrences, first.resolved_at, first.acknowledged) == (
        AWKWARD, 7, NOW + timedelta(minutes=1), True)
    assert (second.message, second.occurrences, second.resolved_at, second.acknowledged) == (
        "NULL", 2, None, False)


def test_update_rows_of_nothing_is_a_no_op(db):
    assert update_rows(RiskAlert, ("message",), []) == 0


def test_insert_rows_appends_rows_with_json_and_nulls(frozen, risk_strategy):
    position = open_position(risk_strategy)
    fields = ("position", "taken_at", "score", "time_score", "drawdown_score", "volume_score",
              "volatility_score", "profitability_score", "danger_level", "price",
              "data_complete", "missing")
    rows = [(position.pk, NOW, Decimal("59.65"), Decimal("75.00"), Decimal("60.00"),
             Decimal("60.00"), Decimal("50.00"), Decimal("47.67"), "WARNING",
             Decimal("99.96"), True, []),
            (position.pk, NOW, Decimal("55.00"), Decimal("75.00"), Decimal("50.00"),
             Decimal("50.00"), Decimal("50.00"), Decimal("50.00"), "WARNING", None, False,
             ["drawdown", "volume", "volatility", "profitability"])]
    assert insert_rows(HealthSnapshot, fields, rows) == 2
    stored = list(HealthSnapshot.objects.order_by("id").values_list(
        "score", "price", "data_complete", "missing"))
    assert stored == [(Decimal("59.65"), Decimal("99.96"), True, []),
                      (Decimal("55.00"), None, False,
                       ["drawdown", "volume", "volatility", "profitability"])]


@pytest.mark.postgres
def test_naive_datetimes_are_refused(frozen, risk_strategy):
    alert = RiskAlertFactory(position=open_position(risk_strategy))
    with pytest.raises(ValueError, match="naive"):
        update_rows(RiskAlert, ("last_seen",), [(alert.pk, datetime(2026, 1, 1, 12, 0))])
