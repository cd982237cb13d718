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
    assert "NET PNL: unrealised, net of the assumed entry and exit fees" in lines[2]
    assert lines[4].split() == ["ID", "STRATEGY", "SYMBOL", "SIDE", "STATE", "LEVEL", "SCORE",
                                "TIME", "DRAWDOWN", "VOLUME", "VOLATILITY", "PROFIT", "PRICE",
                                "NET", "PNL", "MIN", "LEFT", "DATA"]
    # One number format: no trailing zeros (the issue: "1.1729000000"), never -0.
    assert lines[5].split() == [str(warning.pk), "scalper", "ETH/USDT:USDT", "long", "OPEN",
                                "WARNING", "59.65", "75", "60", "60", "50", "47.67",
                                "99.96", "-0.28", "180", "complete"]
    assert lines[6].split() == [str(blind.pk), "scalper", "NEW/USDT", "long", "OPEN", "SAFE",
                                "73.92", "95.83", "100", "50", "50", "48.33",
                                "100", "-0.2", "230", "missing:", "volume,volatility"]
    assert lines[8] == "Open alerts: 1"
    alert = RiskAlert.objects.get()
    assert lines[10].split()[:5] == [str(alert.pk), "WARNING", "danger_warning", str(warning.pk),
                                    "ETH/USDT:USDT"]
    assert lines[10].endswith("Health score 59.65 is below the warning threshold 60.")


def test_the_report_as_json_matches_the_api(checked):
    out = StringIO()
    call_command("risk_report", "--json", "--worst", "1", stdout=out)
    report = json.loads(out.getvalue())
    assert report["counts"] == {"SAFE": 1, "WARNING": 1, "CRITICAL": 0, "UNSCORED": 0}
    assert [p["score"] for p in report["worst_positions"]] == [59.65]
