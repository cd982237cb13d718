"""The delivery pass with real Apprise delivering to a local HTTP sink; time moved, never slept."""

from __future__ import annotations

import itertools
import logging
from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from notifications.delivery import deliver_pass, request_pass_at, take_lease
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryClock,
    DeliveryState,
    Notification,
    NotificationChannel,
)
from risk.models import AlertSeverity
from risk.services import alert_raise
from tradingsite.testing.factories import ExchangeAccountFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def position(clock):
    account = ExchangeAccountFactory(name="bybit-main")
    strategy = StrategyFactory(name="xrp-trend-5m", account=account)
    return PositionFactory(strategy=strategy, symbol="XRP/USDT:USDT", quantity=Decimal("100"),
                           entry_price=Decimal("0.5"), last_price=Decimal("0.48"),
                           last_price_at=timezone.now(), health_score=Decimal("24.5"),
                           danger_level="CRITICAL",
                           opened_at=timezone.now() - timedelta(minutes=200))


def positions(count: int) -> list:
    strategy = StrategyFactory(name="many")
    return [PositionFactory(strategy=strategy, symbol=f"S{i}/USDT:USDT") for i in range(count)]


def drive(clock, *, until: timedelta) -> list:
    """Run passes, moving time to each next due moment, until ``until`` from now."""
    end = timezone.now() + until
    results = []
    while True:
        result = deliver_pass()
        results.append(result)
        if result.next_due is None or result.next_due > end:
            return results
        clock.move_to(max(result.next_due, timezone.now()))


# --- one message, as a trader reads it --------------------------------------------------------

def test_an_alert_reaches_the_sink_with_what_a_trader_needs(position, sink, notify_to):
    notify_to(sink.url)
    alert_raise(position=position, kind="danger_critical", severity=AlertSeverity.CRITICAL,
                message="Health score 24.50 is below the critical threshold 30.")

    result = deliver_pass()

    assert (result.routed, result.sent) == (1, 1)
    [message] = sink.received
    assert message["title"] == f"CRITICAL: Health critical · XRP/USDT:USDT long #{position.pk}"
    assert message["type"] == "failure"
    lines = message["message"].split("\n")
    assert lines[0] == "Health score 24.50 is below the critical threshold 30."
    assert lines[1] == (f"Position #{position.pk} XRP/USDT:USDT long 100 @ 0.5 · strategy "
                        "xrp-trend-5m · account bybit-main")
    assert lines[2] == ("Price 0.48 at 2026-03-02 12:00:00 UTC · unrealised PnL -2.00 (-4.00 %, "
                        "before fees) · health 24.5 (CRITICAL) · state OPEN · held 3 h 20 min, "
                        "times out in 40 min (limit 240 min)")
    assert lines[-1] == f"https://trading.example.test/positions/{position.pk}/"
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.sent_at) == (
        DeliveryState.SENT, 1, timezone.now())
    assert DeliveryAttempt.objects.get().ok is True


def test_a_notification_of_a_rolled_back_alert_is_never_sent(position, sink, notify_to):
    from django.db import transaction

    notify_to(sink.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        alert_raise(position=position, kind="slippage", severity=AlertSeverity.CRITICAL,
                    message="sent anyway")
        raise RuntimeError("the caller fails after the alert")

    assert Notification.objects.count() == 0
    assert deliver_pass().sent == 0
    assert sink.received == []


# --- the sink down for two minutes ------------------------------------------------------------

def test_the_sink_down_for_two_minutes_then_every_message_arrives_once(clock, sink, notify_to):
    notify_to(sink.url)
    held = positions(5)
    sink.stop()
    started = timezone.now()
    for p in held:
        alert_raise(position=p, kind="danger_warning", severity=AlertSeverity.WARNING,
                    message=f"warning on {p.symbol}")

    down = drive(clock, until=timedelta(minutes=2) - timedelta(seconds=1))

    assert sum(r.sent for r in down) == 0
    failed_at = [a.at - started for a in DeliveryAttempt.objects.order_by("at")]
    # one attempt per retry, the channel pausing 1, 2, 4 … s after each failure
    assert [int(t.total_seconds()) for t in failed_at] == [0, 1, 3, 7, 15, 31, 63]
    assert NotificationChannel.objects.get().failures == 7

    clock.move_to(started + timedelta(minutes=2))
    sink.start()
    after = drive(clock, until=timedelta(minutes=30))

    assert sum(r.sent for r in after) == 5
    assert sorted(m["message"].split("\n")[0] for m in sink.received) == sorted(
        f"warning on {p.symbol}" for p in held)
    assert sink.received[0]["message"].startswith("warning on S0/USDT:USDT")  # order kept
    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.SENT}
    # the retry that found the sink up again came at 127 s, the rest right after it
    assert Delivery.objects.order_by("pk").first().sent_at - started == timedelta(seconds=127)
    channel = NotificationChannel.objects.get()
    assert (channel.failures, channel.retry_at) == (0, None)


def test_a_message_not_delivered_within_24_hours_is_shown_as_failed(position, sink, notify_to,
                                                                    clock):
    notify_to(sink.url)
    sink.stop()
    alert_raise(position=position, kind="fill_unapplied", severity=AlertSeverity.CRITICAL,
                message="fill stays on the order")

    drive(clock, until=timedelta(hours=25))

    delivery = Delivery.objects.get()
    assert delivery.state == DeliveryState.FAILED
    assert delivery.last_error.startswith("not delivered within 24 h; last error: not "
                                          "delivered (failure); WARNING: A Connection error")
    # 1 s doubling to 10 min: 11 attempts in the first ~17 min, then every 10 min
    attempts = list(DeliveryAttempt.objects.order_by("at").values_list("at", flat=True))
    gaps = [int((b - a).total_seconds()) for a, b in itertools.pairwise(attempts)]
    assert gaps[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600]
    assert set(gaps[10:]) == {600}
    assert sink.received == []


# --- deduplication, rate limit, digest ---------------------------------------------------------

def test_100_identical_alerts_within_10_s_give_one_message_and_one_digest(position, sink,
                                                                         notify_to, clock):
    notify_to(sink.url)
    for i in range(100):
        clock.move_to(timezone.now() + timedelta(seconds=0.1))
        alert_raise(position=position, kind="slippage", severity=AlertSeverity.CRITICAL,
                    message=f"Emergency close close-{i} sent anyway")
        if i % 10 == 0:
            deliver_pass()  # passes run while the alerts keep coming

    drive(clock, until=timedelta(minutes=10))

    assert len(sink.received) == 2
    first, digest = sink.received
    assert first["message"].startswith("Emergency close close-0 sent anyway")
    assert digest["title"] == ("Digest: 99 messages held back since 2026-03-02 12:00:01 UTC "
                               "(99 CRITICAL)")
    assert (f"• [CRITICAL] Emergency close sent despite slippage · XRP/USDT:USDT long "
            f"#{position.pk} ×99, last at 2026-03-02 12:00:10 UTC: Emergency close close-99 "
            "sent anyway") in digest["message"]
    assert Delivery.objects.filter(state=DeliveryState.FOLDED).count() == 99
    assert Notification.objects.filter(duplicate_of__isnull=False).count() == 99


def test_past_the_rate_limit_the_excess_goes_into_one_digest(clock, sink, notify_to):
    notify_to(f"rate=3/60:{sink.url}")
    for p in positions(8):
        alert_raise(position=p, kind="danger_warning", severity=AlertSeverity.WARNING,
                    message=f"warning on {p.symbol}")

    first = deliver_pass()
    assert (first.sent, first.folded, first.next_due) == (3, 5, timezone.now()
                                                          + timedelta(seconds=60))
    drive(clock, until=timedelta(minutes=5))

    assert [m["message"].split("\n")[0] for m in sink.received[:3]] == [
        "warning on S0/USDT:USDT", "warning on S1/USDT:USDT", "warning on S2/USDT:USDT"]
    [digest] = sink.received[3:]
    assert digest["title"].startswith("Digest: 5 messages held back")
    assert [line for line in digest["message"].split("\n") if line.startswith("•")] == [
        f"• [WARNING] Health warning · S{i}/USDT:USDT long #{p} , last at".replace(" , ", ", ")
        + f" 2026-03-02 12:00:00 UTC: warning on S{i}/USDT:USDT "
          f"https://trading.example.test/positions/{p}/"
        for i, p in zip(range(3, 8), Notification.objects.filter(
            duplicate_of__isnull=True, channel__isnull=True).order_by("pk").values_list(
            "position_id", flat=True)[3:8], strict=True)]


# --- quiet hours -----------------------------------------------------------------------------

def test_quiet_hours_hold_a_warning_and_pass_a_critical(position, sink, notify_to, clock,
                                                        settings):
    settings.TIME_ZONE = "Europe/Berlin"  # 12:00 UTC is 13:00 here
    notify_to(f"quiet=12:30-14:00:{sink.url}")
    alert_raise(position=position, kind="danger_warning", severity=AlertSeverity.WARNING,
                message="health 55")
    alert_raise(position=position, kind="fill_unapplied", severity=AlertSeverity.CRITICAL,
                message="fill stays on the order")

    result = deliver_pass()

    assert (result.sent, result.held) == (1, 1)
    assert sink.titles() == [f"CRITICAL: Exit fill not applied · BTC/USDT:USDT long "
                             f"#{position.pk}".replace("BTC", "XRP")]
    held = Delivery.objects.get(state=DeliveryState.HELD)
    assert held.next_attempt_at == timezone.now() + timedelta(hours=1)  # 14:00 Berlin
    assert result.next_due == held.next_attempt_at

    drive(clock, until=timedelta(hours=2))
    assert sink.titles()[1].startswith("WARNING: Health warning")
    assert Delivery.objects.get(pk=held.pk).sent_at == timezone.now().replace(hour=13)


def test_quiet_hours_may_span_midnight(settings):
    from datetime import UTC, datetime

    from notifications.channels import quiet_until

    settings.TIME_ZONE = "UTC"
    start, end = time(22, 0), time(7, 0)
    at = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert quiet_until(start, end, at) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert quiet_until(start, end, at.replace(hour=6)) == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert quiet_until(start, end, at.replace(hour=7)) is None
    assert quiet_until(start, end, at.replace(hour=21, minute=59)) is None


# --- routing ---------------------------------------------------------------------------------

def test_channels_take_only_their_severities_and_kinds(position, sink, notify_to):
    from tradingsite.testing.sink import Sink

    critical_only, closes_only = Sink(), Sink()
    critical_only.start()
    closes_only.start()
    try:
        notify_to(sink.url, f"severity>=CRITICAL:{critical_only.url}",
                  f"kind=position_*|close_*:{closes_only.url}")
        alert_raise(position=position, kind="danger_warning", severity=AlertSeverity.WARNING,
                    message="health 55")
        alert_raise(position=position, kind="danger_critical", severity=AlertSeverity.CRITICAL,
                    message="health 25")
        from lifecycle.services import position_request_close

        position_request_close(position=position, reason="manual", actor="alice")

        deliver_pass()
    finally:
        critical_only.stop()
        closes_only.stop()
    assert [t.split(" · ")[0] for t in sink.titles()] == [
        "WARNING: Health warning", "CRITICAL: Health critical", "INFO: Close requested"]
    assert [t.split(" · ")[0] for t in critical_only.titles()] == ["CRITICAL: Health critical"]
    assert [t.split(" · ")[0] for t in closes_only.titles()] == ["INFO: Close requested"]
    assert {c.name for c in NotificationChannel.objects.all()} == {"env-json", "env-json-2",
                                                                   "env-json-3"}


def test_a_disabled_channel_sends_nothing_and_says_so(position, sink, notify_to):
    notify_to(sink.url)
    alert_raise(position=position, kind="slippage", severity=AlertSeverity.CRITICAL,
                message="sent anyway")
    deliver_pass()
    alert_raise(position=position, kind="fill_unapplied", severity=AlertSeverity.CRITICAL,
                message="fill")
    from notifications.delivery import route_new

    route_new()
    NotificationChannel.objects.update(enabled=False)

    result = deliver_pass()

    assert result.given_up == 1
    assert Delivery.objects.get(state=DeliveryState.FAILED).last_error == "channel disabled"
    assert len(sink.received) == 1


# --- one sender per channel ------------------------------------------------------------------

def test_a_channel_another_pass_is_serving_is_left_to_it(position, sink, notify_to):
    notify_to(sink.url)
    alert_raise(position=position, kind="slippage", severity=AlertSeverity.CRITICAL,
                message="sent anyway")
    deliver_pass()  # creates the channel row, sends the first
    alert_raise(position=position, kind="fill_unapplied", severity=AlertSeverity.CRITICAL,
                message="fill")
    channel = NotificationChannel.objects.get()
    assert take_lease(channel)  # another worker is at it

    assert deliver_pass().sent == 0
    NotificationChannel.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert deliver_pass().sent == 1
    assert len(sink.received) == 2


def test_follow_up_passes_coalesce_into_one_scheduled_task(clock, monkeypatch):
    from notifications.tasks import deliver_notifications

    scheduled = []
    monkeypatch.setattr(deliver_notifications, "apply_async",
                        lambda **kwargs: scheduled.append(kwargs["countdown"]))
    now = timezone.now()
    assert request_pass_at(now + timedelta(seconds=4)) is True
    assert request_pass_at(now + timedelta(seconds=8)) is False  # one is due earlier
    assert request_pass_at(now + timedelta(seconds=2)) is True  # earlier: scheduled too
    clock.move_to(now + timedelta(seconds=3))
    assert request_pass_at(now + timedelta(seconds=9)) is True  # the earlier one ran
    assert scheduled == [4.0, 2.0, 6.0]
    assert DeliveryClock.objects.get().wake_at == now + timedelta(seconds=9)


# --- secrets -----------------------------------------------------------------------------------

def test_a_secret_in_the_url_is_never_in_the_delivery_log_or_the_log(
        position, sink, notify_to, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SINK_PASSWORD", "s3cr3t-Pa55word")
    notify_to(f"json://trader:{{env:NOTIFY_SINK_PASSWORD}}@127.0.0.1:{sink.port}/")
    sink.stop()
    alert_raise(position=position, kind="slippage", severity=AlertSeverity.CRITICAL,
                message="sent anyway")

    with caplog.at_level(logging.DEBUG):
        deliver_pass()

    texts = [*DeliveryAttempt.objects.values_list("detail", flat=True),
             *Delivery.objects.values_list("last_error", flat=True),
             *NotificationChannel.objects.values_list("last_error", flat=True), caplog.text]
    assert all("s3cr3t-Pa55word" not in text for text in texts)
    assert "A Connection error occurred sending JSON notification" in texts[0]


def test_a_channel_naming_a_missing_variable_fails_visibly(position, notify_to):
    notify_to("json://trader:{env:NOTIFY_NOT_SET}@127.0.0.1:9/")
    alert_raise(position=position, kind="slippage", severity=AlertSeverity.CRITICAL,
                message="sent anyway")

    assert deliver_pass().failed_attempts == 1

    assert Delivery.objects.get().last_error == (
        "channel not usable: NOTIFY_NOT_SET is not set (the channel URL names "
        "{env:NOTIFY_NOT_SET})")
