"""Alerts: the public alert_raise, resolution on close, acknowledgement (service and admin)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from lifecycle.services import position_apply_close_fill, position_begin_close
from risk.models import RiskAlert
from risk.services import alert_raise, alerts_acknowledge
from risk.tests.conftest import NOW, open_position
from tradingsite.testing.factories import RiskAlertFactory

pytestmark = pytest.mark.django_db


def test_raise_alert_opens_once_and_refreshes_on_repeat(frozen, risk_strategy, live_events):
    position = open_position(risk_strategy)
    first = alert_raise(position=position, kind="slippage", severity="WARNING",
                        message="Fill 0.7 % worse than expected")
    frozen.move_to(NOW + timedelta(seconds=30))
    again = alert_raise(position=position, kind="slippage", severity="WARNING",
                        message="Fill 0.9 % worse than expected")
    assert again.pk == first.pk
    alert = RiskAlert.objects.get()
    assert (alert.occurrences, alert.first_seen, alert.last_seen) == (
        2, NOW, NOW + timedelta(seconds=30))
    assert alert.message == "Fill 0.9 % worse than expected"
    raised = [p for e, p in live_events if e == "alert.raised"]
    assert [(p["id"], p["kind"], p["symbol"], p["occurrences"]) for p in raised] == [
        (alert.pk, "slippage", "ETH/USDT:USDT", 1)]


def test_a_regraded_alert_is_pushed_again(frozen, risk_strategy, live_events):
    position = open_position(risk_strategy)
    alert_raise(position=position, kind="slippage", severity="WARNING", message="0.6 %")
    alert_raise(position=position, kind="slippage", severity="CRITICAL", message="3 %")
    raised = [p for e, p in live_events if e == "alert.raised"]
    assert [(p["severity"], p["occurrences"]) for p in raised] == [("WARNING", 1), ("CRITICAL", 2)]


def test_alerts_without_a_position_are_deduplicated_by_kind(frozen, db):
    alert_raise(kind="exchange_unreachable", severity="CRITICAL", message="bybit: timeout")
    alert_raise(kind="exchange_unreachable", severity="CRITICAL", message="bybit: timeout")
    alert_raise(kind="stale_feed", severity="INFO", message="no candles for 10 minutes")
    assert sorted(RiskAlert.objects.values_list("kind", "occurrences", "position")) == [
        ("exchange_unreachable", 2, None), ("stale_feed", 1, None)]


def test_raise_alert_refuses_an_unknown_severity(db):
    with pytest.raises(ValueError, match="severity"):
        alert_raise(kind="x", severity="PANIC", message="?")


def test_closing_a_position_resolves_its_open_alerts(frozen, risk_strategy, live_events):
    position = open_position(risk_strategy)
    alert_raise(position=position, kind="slippage", severity="WARNING", message="0.6 %")
    RiskAlertFactory(position=position, kind="danger_warning")
    other = RiskAlertFactory(position=open_position(risk_strategy), kind="danger_warning")
    position_begin_close(position, reason="risk", actor="risk")
    position_apply_close_fill(position, fill_key="close:1", quantity=Decimal("2"),
                              price=Decimal("99"))
    assert list(RiskAlert.objects.filter(position=position).values_list(
        "resolved_at", flat=True)) == [NOW, NOW]
    other.refresh_from_db()
    assert other.is_open
    resolved = sorted(p["kind"] for e, p in live_events if e == "alert.resolved")
    assert resolved == ["danger_warning", "slippage"]


def test_acknowledging_records_who_and_when_and_is_idempotent(frozen, risk_strategy, live_events):
    alert = RiskAlertFactory(position=open_position(risk_strategy))
    assert alerts_acknowledge(alert_ids=[alert.pk], by="operator") == 1
    frozen.move_to(NOW + timedelta(minutes=3))
    assert alerts_acknowledge(alert_ids=[alert.pk], by="someone-else") == 0
    alert.refresh_from_db()
    assert (alert.acknowledged, alert.acknowledged_by, alert.acknowledged_at) == (
        True, "operator", NOW)
    assert alert.is_open  # acknowledged is not resolved
    assert [e for e, _ in live_events] == ["alert.acknowledged"]


def test_the_admin_action_acknowledges_with_the_operators_name(client, staff_user, frozen,
                                                               risk_strategy):
    alerts = [RiskAlertFactory(position=open_position(risk_strategy)) for _ in range(2)]
    client.force_login(staff_user)
    response = client.post(reverse("admin:risk_riskalert_changelist"),
                           {"action": "acknowledge", "_selected_action": [a.pk for a in alerts]},
                           follow=True)
    assert response.status_code == 200
    assert "2 alert(s) acknowledged by operator." in response.content.decode()
    assert list(RiskAlert.objects.values_list("acknowledged_by", flat=True)) == ["operator"] * 2


def test_the_admin_action_runs_a_risk_check_now(client, staff_user, frozen, risk_strategy):
    from risk.models import StrategyRiskCheck

    open_position(risk_strategy)
    StrategyRiskCheck.objects.filter(strategy=risk_strategy).update(last_checked_at=NOW)
    client.force_login(staff_user)
    response = client.post(reverse("admin:risk_strategyriskcheck_changelist"),
                           {"action": "check_now", "_selected_action": [risk_strategy.pk]},
                           follow=True)
    assert "Checked 1 position(s) of 1 strategy(ies)" in response.content.decode()
    assert risk_strategy.positions.get().health_checked_at == NOW


def test_the_admin_pages_render(client, staff_user, frozen, risk_strategy):
    from risk.models import StrategyRiskCheck

    RiskAlertFactory(position=open_position(risk_strategy))
    StrategyRiskCheck.objects.filter(strategy=risk_strategy).update(last_checked_at=NOW)
    client.force_login(staff_user)
    for name in ("riskalert", "healthsnapshot", "strategyriskcheck"):
        assert client.get(reverse(f"admin:risk_{name}_changelist")).status_code == 200
