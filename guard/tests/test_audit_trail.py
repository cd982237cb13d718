"""Every operator action and configuration change leaves a row in the one audit log."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command

from execution.services import order_request_cancel
from guard.services import scope_get, scope_portfolio_set
from lifecycle.services import position_request_close
from risk.services import alert_acknowledge
from tradingsite.models import AuditEvent
from tradingsite.services import shutdown_request
from tradingsite.testing.factories import OrderFactory, PositionFactory, RiskAlertFactory

pytestmark = pytest.mark.django_db


def rows() -> list[tuple]:
    return list(AuditEvent.objects.order_by("id").values_list("actor", "action", "target_type"))


def test_a_close_request_is_audited_once(strategy):
    position = PositionFactory(strategy=strategy)

    position_request_close(position=position, reason="manual", actor="alice", note="too big")
    position_request_close(position=position, reason="manual", actor="bob")  # the open one

    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target_id, event.after["reason"], event.reason) == (
        "alice", "position.close_request", str(position.pk), "manual", "too big")


def test_a_cancel_request_and_an_api_entry_are_audited(staff_api, strategy):
    order = OrderFactory(account=strategy.account)
    order_request_cancel(order, actor="alice")
    order_request_cancel(order, actor="alice")  # the queued one: nothing new

    response = staff_api.post("/api/execution/orders/place", {
        "strategy": strategy.name, "symbol": "BTC/USDT:USDT", "side": "buy", "quantity": "0.5"},
        format="json")

    assert response.status_code == 202
    assert rows() == [("alice", "order.cancel_request", "execution.order"),
                      ("operator", "order.place_request", "execution.order")]
    assert AuditEvent.objects.order_by("id").last().after == {"strategy": strategy.name,
                                               "symbol": "BTC/USDT:USDT", "side": "buy",
                                               "quantity": "0.500000000000", "order_type": "market",
                                               "price": None, "expected_price": None}


def test_an_acknowledged_alert_and_a_shutdown_request_are_audited(strategy):
    alert = RiskAlertFactory(position=PositionFactory(strategy=strategy))
    alert_acknowledge(alert_id=alert.pk, by="alice")
    alert_acknowledge(alert_id=alert.pk, by="alice")  # already seen: nothing new
    shutdown_request(actor="bob")

    assert rows() == [("alice", "alert.acknowledge", "risk.riskalert"),
                      ("bob", "platform.shutdown_request", "tradingsite.platformstate")]


def test_configuration_imports_are_audited(tmp_path, settings, strategy):
    settings.LIVE_TRADING_FILE = tmp_path / "site.json"
    site = tmp_path / "site-in.json"
    site.write_text(json.dumps({"portfolio": {"maxOpenPositions": 20}}))
    own = tmp_path / "strategy.json"
    own.write_text(json.dumps({"portfolio": {"maxOpenPositions": 3}}))

    call_command("live_config", import_file=str(site), actor="alice")
    call_command("live_config", import_file=str(own), strategy=strategy.name, actor="alice")

    first, second = AuditEvent.objects.order_by("id")
    assert (first.action, first.before, first.after) == (
        "live_config.import", {"liveTrading": {}},
        {"liveTrading": {"portfolio": {"maxOpenPositions": 20}}})
    assert (second.target_repr, second.before, second.after) == (
        strategy.name, {"live_trading": {}},
        {"live_trading": {"portfolio": {"maxOpenPositions": 3}}})


def test_a_strategy_may_not_set_an_accounts_loss_limit(tmp_path, strategy):
    own = tmp_path / "strategy.json"
    own.write_text(json.dumps({"portfolio": {"dailyLossLimitPercent": 3}}))

    with pytest.raises(Exception, match=re.escape(
            "liveTrading.portfolio.dailyLossLimitPercent: applies to an account or the whole "
            "platform")):
        call_command("live_config", import_file=str(own), strategy=strategy.name)
    assert not AuditEvent.objects.exists()


def test_a_strategy_edited_in_the_admin_is_audited(admin_client, strategy):
    response = admin_client.post(f"/admin/lifecycle/strategy/{strategy.pk}/change/", {
        "name": strategy.name, "account": strategy.account_id, "timeframe": "15m",
        "live_trading": json.dumps({"portfolio": {"maxOrdersPerMinute": 5}}),
        "enabled": "on", "description": ""})

    assert response.status_code == 302
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.before, event.after) == (
        "admin", "strategy.update", {"timeframe": "5m", "live_trading": {}},
        {"timeframe": "15m", "live_trading": {"portfolio": {"maxOrdersPerMinute": 5}}})


def test_an_accounts_limits_are_validated_and_audited(strategy):
    from tradingsite.live_config import LiveConfigError

    scope = scope_get(f"account:{strategy.account.name}")
    with pytest.raises(LiveConfigError, match=re.escape(
            "maxExposurePercent: must be between 0.01 and 10000 %, got 0")):
        scope_portfolio_set(scope=scope, overrides={"maxExposurePercent": 0}, actor="alice")

    scope_portfolio_set(scope=scope, overrides={"maxExposurePercent": 150}, actor="alice",
                        reason="leverage 1.5")

    event = AuditEvent.objects.get()
    assert (event.action, event.before, event.after, event.reason) == (
        "trading_scope.limits", {"portfolio": {}}, {"portfolio": {"maxExposurePercent": 150}},
        "leverage 1.5")


def test_the_admin_sets_a_state_and_an_accounts_limits_through_the_services(admin_client,
                                                                           strategy):
    scope = scope_get(f"account:{strategy.account.name}")

    response = admin_client.post(f"/admin/guard/tradingscope/{scope.pk}/change/", {
        "new_state": "REDUCING", "reason": "review", "portfolio": json.dumps(
            {"maxOpenPositions": 4})})
    refused = admin_client.post(f"/admin/guard/tradingscope/{scope.pk}/change/", {
        "new_state": "HALTED", "reason": "", "portfolio": json.dumps({"maxOpenPositions": 0})})

    assert response.status_code == 302
    assert refused.status_code == 200
    assert "A state change needs a reason." in refused.content.decode()
    assert "maxOpenPositions: must be between 1 and 100000, got 0" in refused.content.decode()
    assert [row[1] for row in rows()] == ["trading_scope.limits", "trading_state.set"]
    scope.refresh_from_db()
    assert (scope.state, scope.portfolio) == ("REDUCING", {"maxOpenPositions": 4})
