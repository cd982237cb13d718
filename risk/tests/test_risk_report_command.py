"""`manage.py risk_report` prints the health report."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from risk.models import RiskAlert
from risk.services import risk_check_run
from risk.tests.conftest import CLOSES, VOLUMES, add_candles, open_position

pytestmark = pytest.mark.django_db


@pytest.fixture
def checked(frozen, risk_strategy):
    warning = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    blind = open_position(risk_strategy, symbol="NEW/USDT", minutes_ago=10)
    risk_check_run()
    return warning, blind


def test_the_report_prints_counts_positions_worst_first_and_open_alerts(checked):
    warning, blind = checked
    out = StringIO()
    call_command("risk_report", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Risk report 2026-01-05 12:00:00 UTC — 2 position(s) held"
    assert lines[1] == "SAFE 1  WARNING 1  CRITICAL 0  UNSCORED 0"
    assert lines[3].split() == ["ID", "STRATEGY", "SYMBOL", "SIDE", "STATE", "LEVEL", "SCORE",
                                "TIME", "DRAWDOWN", "VOLUME", "VOLATILITY", "PROFIT", "PRICE",
                                "PNL", "MIN", "LEFT", "DATA"]
    assert lines[4].split() == [str(warning.pk), "scalper", "ETH/USDT:USDT", "long", "OPEN",
                                "WARNING", "59.65", "75.00", "60.00", "60.00", "50.00", "47.67",
                                "99.9600000000", "-0.28", "180.0", "complete"]
    assert lines[5].split() == [str(blind.pk), "scalper", "NEW/USDT", "long", "OPEN", "SAFE",
                                "73.92", "95.83", "100.00", "50.00", "50.00", "48.33",
                                "100.0000000000", "-0.20", "230.0", "missing:", "volume,volatility"]
    assert lines[7] == "Open alerts: 1"
    alert = RiskAlert.objects.get()
    assert lines[9].split()[:5] == [str(alert.pk), "WARNING", "danger_warning", str(warning.pk),
                                    "ETH/USDT:USDT"]
    assert lines[9].endswith("Health score 59.65 is below the warning threshold 60.")


def test_the_report_as_json_matches_the_api(checked):
    out = StringIO()
    call_command("risk_report", "--json", "--worst", "1", stdout=out)
    report = json.loads(out.getvalue())
    assert report["counts"] == {"SAFE": 1, "WARNING": 1, "CRITICAL": 0, "UNSCORED": 0}
    assert [p["score"] for p in report["worst_positions"]] == [59.65]
