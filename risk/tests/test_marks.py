"""Danger acted on in seconds: the price-driven health on every fresh mark (risk.marks)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.models import Action, ActionKind
from lifecycle.external import positions_mark
from lifecycle.models import Position
from risk.marks import danger_on_marks
from risk.models import HealthSnapshot, RiskAlert
from risk.services import risk_check_run
from risk.tests.conftest import CLOSES, NOW, VOLUMES, add_candles, open_position
from tradingsite.domain import CloseReason
from tradingsite.testing.factories import StrategyFactory

pytestmark = pytest.mark.django_db
ETH = "ETH/USDT:USDT"


@pytest.fixture
def checked(frozen, risk_strategy):
    """A position scored WARNING 59.65 by the candle check (see test_check_risk)."""
    position = open_position(risk_strategy)
    add_candles(ETH, CLOSES, VOLUMES)
    risk_check_run()
    return position


def test_a_crash_between_candle_checks_turns_the_position_critical_and_closes_it(
        frozen, checked, risk_strategy):
    frozen.move_to(NOW + timedelta(minutes=60))
    at = NOW + timedelta(minutes=60)

    positions_mark(account_id=risk_strategy.account_id, marks={ETH: Decimal("94")}, at=at)

    position = Position.objects.get(pk=checked.pk)
    # time 100·(1 − 120/240) = 50; drawdown 8/102 = 7.8 % > 5 % → 0; volume 60 and
    # volatility 50 carried from the candle check; profitability −6.1 % → 0:
    # 0.2·50 + 0.3·0 + 0.2·60 + 0.15·50 + 0.15·0 = 29.50 < 30
    assert (position.health_score, position.danger_level) == (Decimal("29.50"), "CRITICAL")
    assert position.health_checked_at == NOW  # the five-component check keeps its cadence
    snapshot = HealthSnapshot.objects.get(position=position, taken_at=at)
    assert (snapshot.time_score, snapshot.drawdown_score, snapshot.volume_score,
            snapshot.volatility_score, snapshot.profitability_score, snapshot.price) == (
        Decimal("50.00"), Decimal("0.00"), Decimal("60.00"), Decimal("50.00"),
        Decimal("0.00"), Decimal("94"))
    [action] = Action.objects.filter(position=position)
    assert (action.kind, action.reason, action.requested_by) == (
        ActionKind.EMERGENCY_CLOSE, CloseReason.RISK, "risk")
    alert = RiskAlert.objects.get(position=position, kind="danger_critical")
    assert alert.message == ("Health score 29.50 is below the critical threshold 30 "
                             "(price 94.0000000000).")


def test_the_same_mark_again_changes_nothing_and_queues_no_second_close(frozen, checked,
                                                                         risk_strategy):
    at = NOW + timedelta(minutes=60)
    frozen.move_to(at)
    positions_mark(account_id=risk_strategy.account_id, marks={ETH: Decimal("94")}, at=at)
    result = danger_on_marks(account_id=risk_strategy.account_id, at=at)
    assert (result.positions, result.changed, result.closes_requested) == (1, 0, [])
    assert Action.objects.filter(position=checked).count() == 1
    assert HealthSnapshot.objects.filter(position=checked).count() == 2


def test_a_recovering_mark_lowers_the_level_without_a_close(frozen, checked, risk_strategy):
    at = NOW + timedelta(minutes=1)
    frozen.move_to(at)
    positions_mark(account_id=risk_strategy.account_id, marks={ETH: Decimal("102")}, at=at)
    position = Position.objects.get(pk=checked.pk)
    # time 100·(1 − 61/240) = 74.58; drawdown 0 → 100; volume 60; volatility 50;
    # profitability (2 − 0.1 + 3)/6 = 81.67 → 14.92 + 30 + 12 + 7.5 + 12.25 = 76.67
    assert (position.health_score, position.danger_level) == (Decimal("76.67"), "SAFE")
    assert not Action.objects.filter(position=position).exists()


def test_a_position_never_candle_checked_scores_volume_and_volatility_neutral(
        frozen, risk_strategy):
    position = open_position(risk_strategy, entry="100", minutes_ago=60)
    result = danger_on_marks(account_id=risk_strategy.account_id, at=NOW)  # price = entry
    assert result.positions == 1
    position = Position.objects.get(pk=position.pk)
    # time 75, drawdown 100, volume 50, volatility 50 (neutral), profitability (−0.1+3)/6
    # = 48.33: 15 + 30 + 10 + 7.5 + 7.25 = 69.75
    assert (position.health_score, position.danger_level) == (Decimal("69.75"), "SAFE")


def test_emergency_close_off_keeps_the_position_but_alerts(frozen, account):
    strategy = StrategyFactory(account=account, name="no-close", live_trading={
        "riskMonitoring": {"emergencyCloseOnCritical": False}})
    position = open_position(strategy, entry="100", minutes_ago=200)
    positions_mark(account_id=account.pk, marks={ETH: Decimal("80")}, at=NOW)
    assert Position.objects.get(pk=position.pk).danger_level == "CRITICAL"
    assert not Action.objects.exists()
    assert RiskAlert.objects.filter(position=position, kind="danger_critical").exists()


def test_monitoring_disabled_leaves_the_score_alone(frozen, account):
    strategy = StrategyFactory(account=account, name="unwatched", live_trading={
        "riskMonitoring": {"enabled": False}})
    position = open_position(strategy, entry="100", minutes_ago=200)
    positions_mark(account_id=account.pk, marks={ETH: Decimal("80")}, at=NOW)
    position = Position.objects.get(pk=position.pk)
    assert (position.health_score, position.danger_level, position.last_price) == (
        None, "", Decimal("80"))
