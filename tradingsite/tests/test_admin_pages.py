"""Every admin page renders for a staff user, and exchange credentials never appear in it."""

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, SolarSchedule

from analytics.models import MetricSnapshot
from execution.models import AccountStream, ExchangeAccount
from guard.models import GuardTrip, OrderRefusal, TradingScope
from lifecycle.models import Position
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Notification,
    NotificationChannel,
)
from operations.demo import seed_demo
from tradingsite.audit import audit_record
from tradingsite.models import ReconciliationReport, StateSnapshot
from tradingsite.services import trading_halt
from tradingsite.testing.factories import ActionFactory, HealthSnapshotFactory, RiskAlertFactory
from tradingsite.tokens import api_token_issue

API_KEY = "sk-live-7f3a9c1e-never-show-me"
API_SECRET = "s3cr3t-b64-Zm9vYmFyYmF6-never-show-me"
REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def every_model(db, monkeypatch, staff_user):
    """The demo data plus one row of each registered model the demo does not create.

    A newly registered model needs a row here: its change page must render with data.
    """
    monkeypatch.setenv("EXCHANGE_TEST_KEY", API_KEY)
    monkeypatch.setenv("EXCHANGE_TEST_SECRET", API_SECRET)
    seed_demo(username="demo-admin")
    bybit = ExchangeAccount.objects.create(name="bybit-live", exchange_id="bybit",
                                           api_key_env="EXCHANGE_TEST_KEY",
                                           api_secret_env="EXCHANGE_TEST_SECRET",
                                           api_base_url="http://127.0.0.1:9/")
    AccountStream.objects.create(account=bybit, owner="host:1:a", mode="stream",
                                 last_error="stream dropped",
                                 balances={"USDT": {"free": "1", "used": "0", "total": "1"}})
    position = Position.objects.order_by("opened_at").first()
    ActionFactory(position=position, requested_by="timeout")
    HealthSnapshotFactory(position=position)
    RiskAlertFactory(position=position)
    MetricSnapshot.objects.create(period="ALL", trade_count=36, report={"win_rate": 0.5})
    Group.objects.create(name="operators")
    api_token_issue(user=staff_user, actor="test")
    audit_record(actor="operator", action="exchange_account.update", target=position,
                 before={"api_base_url": ""}, after={"api_base_url": "https://x"})
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    CrontabSchedule.objects.create(minute="0", hour="*/4")
    SolarSchedule.objects.create(event="sunrise", latitude=Decimal("51.5"), longitude=Decimal("0.1"))
    trading_halt(reason="maintenance window", actor="operator")
    StateSnapshot.objects.create(reason="shutdown", data={"open_positions": [position.pk]})
    ReconciliationReport.objects.create(differences=0, summary="database and exchange agree")
    scope = TradingScope.objects.get(kind="global")
    GuardTrip.objects.create(scope=scope, code="DAILY_LOSS", message="daily loss 300 reached "
                             "dailyLossLimitAmount 250", numbers={"loss": "300"},
                             state_before="HALTED", state_after="HALTED")
    OrderRefusal.objects.create(reason_code="TRADING_HALTED", scope="global",
                                message="trading is halted", account=position.strategy.account,
                                strategy=position.strategy, symbol=position.symbol, side="buy",
                                purpose="entry", quantity=Decimal("1"))
    _bot_rows(monkeypatch, position)
    _notification_rows(monkeypatch, position)


def _bot_rows(monkeypatch, position) -> None:
    """A bot connection (its REST credentials in the environment), a trade it handed over,
    a signal source and a signal taken."""
    from bots.connections import bot_connection_create, signal_source_issue
    from bots.models import BotTrade, TradeSignal

    monkeypatch.setenv("BOT_TEST_USER", API_KEY)
    monkeypatch.setenv("BOT_TEST_PASSWORD", API_SECRET)
    connection, _ = bot_connection_create(
        name="ft-admin", strategy=position.strategy, api_url="http://127.0.0.1:9",
        username_env="BOT_TEST_USER", password_env="BOT_TEST_PASSWORD", actor="test")
    BotTrade.objects.create(connection=connection, trade_id=1, position=position,
                            adopted_by=BotTrade.AdoptedBy.WEBHOOK)
    source, _ = signal_source_issue(strategy=position.strategy, actor="test")
    TradeSignal.objects.create(source=source, signal_id="tv-1", request={"action": "close"},
                               answer={"closes": []}, status_code=202)


def _notification_rows(monkeypatch, position) -> None:
    """A channel (its secret in the environment), a notification and a failed delivery."""
    monkeypatch.setenv("NOTIFY_TEST_PASSWORD", API_SECRET)  # shown nowhere either
    channel = NotificationChannel.objects.create(
        name="ops-hook", url="json://bot:{env:NOTIFY_TEST_PASSWORD}@127.0.0.1:9/")
    notification = Notification.objects.create(
        kind="position_timeout", severity="CRITICAL", position=position,
        dedupe_key=f"position_timeout:position:{position.pk}", title="CRITICAL: Position timed out",
        body="Held 241 min", routed_at=timezone.now())
    delivery = Delivery.objects.create(notification=notification, channel=channel,
                                       severity="CRITICAL", state=DeliveryState.PENDING,
                                       attempts=1, last_error="not delivered (failure)")
    DeliveryAttempt.objects.create(delivery=delivery, ok=False, detail="not delivered (failure)")


@pytest.fixture
def operator_client(client, staff_user, every_model):
    client.force_login(staff_user)
    return client


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _html(response) -> str:
    return response.content.decode()


def _assert_no_credentials(response) -> None:
    html = _html(response)
    assert API_KEY not in html
    assert API_SECRET not in html


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_admin_page_renders_without_credentials(operator_client, model):
    model_admin = admin.site._registry[model]
    changelist = operator_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200
    _assert_no_credentials(changelist)
    if model_admin.search_fields:
        searched = operator_client.get(_url(model, "changelist"), {"q": "XRP"})
        assert searched.status_code == 200

    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"no {model._meta.label} row to open"
    change = operator_client.get(_url(model, "change", obj.pk))
    assert change.status_code == 200
    _assert_no_credentials(change)

    add = operator_client.get(_url(model, "add"))
    request = add.wsgi_request
    if model_admin.has_add_permission(request):
        assert add.status_code == 200
        _assert_no_credentials(add)
    else:
        assert add.status_code == 403


def test_the_account_page_names_the_variables_and_whether_they_are_set(operator_client):
    account = ExchangeAccount.objects.get(name="bybit-live")
    html = _html(operator_client.get(_url(ExchangeAccount, "change", account.pk)))
    assert "key: $EXCHANGE_TEST_KEY (set), secret: $EXCHANGE_TEST_SECRET (set)" in html
    assert API_KEY not in html and API_SECRET not in html


def test_a_position_page_shows_its_events_and_orders(operator_client):
    position = Position.objects.get(external_ref="demo-xrp-trend-5m-3")
    html = _html(operator_client.get(_url(Position, "change", position.pk)))
    assert "opened from entry fill" in html
    assert "holding time reached the warning threshold (180 min)" in html
    assert "demo-xrp-trend-5m-3-entry" in html


def test_a_non_staff_user_is_sent_to_the_login_page(client, viewer_user):
    client.force_login(viewer_user)
    response = client.get(_url(Position, "changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
