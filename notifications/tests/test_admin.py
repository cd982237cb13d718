"""The admin: channels without secrets, messages with their delivery log, failures findable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.delivery import deliver_pass
from notifications.models import ChannelSource, Delivery, Notification, NotificationChannel
from risk.services import alert_raise
from tradingsite.models import AuditEvent
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db
TOKEN = "123456789:AAHabcdefghijklmnopqrstuvwxyz0123456"


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def test_channel_pages_never_show_a_secret(staff, settings, monkeypatch):
    monkeypatch.setenv("NOTIFY_TG", TOKEN)
    settings.NOTIFY_URLS = f"severity>=WARNING:tgram://{TOKEN}/42,tgram://{{env:NOTIFY_TG}}/7"
    deliver_pass()  # mirrors NOTIFY_URLS
    literal, placeholder = NotificationChannel.objects.order_by("name")

    listing = staff.get("/admin/notifications/notificationchannel/").content.decode()
    page = staff.get(f"/admin/notifications/notificationchannel/{literal.pk}/change/")

    for html in (listing, page.content.decode()):
        assert "AAHabcdefghijklmnopqrstuvwxyz0123456" not in html
    assert "tgram://****/42/" in listing
    assert "tgram://{env:NOTIFY_TG}/7" in listing
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()  # read-only
    assert placeholder.source == ChannelSource.ENV


def test_an_admin_channel_is_validated_and_audited(staff, monkeypatch):
    monkeypatch.setenv("NOTIFY_TG", TOKEN)
    form = {"name": "ops-telegram", "url": f"tgram://{TOKEN}/42", "enabled": "on",
            "min_severity": "WARNING", "kinds": "", "exclude_kinds": "",
            "rate_limit_messages": "", "rate_limit_seconds": "", "quiet_start": "",
            "quiet_end": ""}
    refused = staff.post("/admin/notifications/notificationchannel/add/", form)
    assert refused.status_code == 200
    assert "holds a secret in clear" in refused.content.decode()
    assert not NotificationChannel.objects.exists()

    saved = staff.post("/admin/notifications/notificationchannel/add/",
                       {**form, "url": "tgram://{env:NOTIFY_TG}/42"})
    assert saved.status_code == 302
    channel = NotificationChannel.objects.get()
    assert (channel.source, channel.url) == (ChannelSource.ADMIN, "tgram://{env:NOTIFY_TG}/42")
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.after["url"]) == (
        "operator", "notification_channel.create", "tgram://{env:NOTIFY_TG}/42")


def test_failed_deliveries_are_found_with_their_attempts(staff, sink, notify_to, clock):
    notify_to(sink.url)
    sink.stop()
    position = PositionFactory()
    alert_raise(position=position, kind="slippage", severity="CRITICAL", message="sent anyway")
    deliver_pass()
    clock.shift(timedelta(hours=25))
    deliver_pass()  # gives up

    notification = Notification.objects.get()
    failing = staff.get("/admin/notifications/notification/?delivery=failed").content.decode()
    assert "sent 0/1, FAILED 1" in failing
    detail = staff.get(f"/admin/notifications/notification/{notification.pk}/change/")
    assert "not delivered within 24 h" in detail.content.decode()
    delivery = Delivery.objects.get()
    log = staff.get(f"/admin/notifications/delivery/{delivery.pk}/change/").content.decode()
    assert log.count("A Connection error occurred sending JSON notification") == 2
    channels = staff.get("/admin/notifications/notificationchannel/").content.decode()
    assert "FAILING (1 in a row, last 1d 01h ago)" in channels


def test_a_test_message_from_the_admin(staff, sink, notify_to):
    notify_to(sink.url)
    deliver_pass()
    channel = NotificationChannel.objects.get()
    response = staff.post("/admin/notifications/notificationchannel/",
                          {"action": "send_test_message", "_selected_action": [channel.pk]},
                          follow=True)
    assert "Env-json: delivered." in response.content.decode()  # capitalised by Django
    assert len(sink.received) == 1


def test_viewers_cannot_see_the_channels(client, viewer_user):
    client.force_login(viewer_user)
    assert client.get("/admin/notifications/notificationchannel/").status_code == 302
    assert timezone.now()
