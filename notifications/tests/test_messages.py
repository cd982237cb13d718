"""Each kind of message says what happened, on which position, with the numbers and a link."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from execution.models import ActionKind
from notifications.messages import duration, number, position_facts, render
from notifications.models import Notification
from tradingsite.testing.factories import ActionFactory, PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(clock):
    strategy = StrategyFactory(name="xrp-scalp-5m", live_trading={
        "lifecycle": {"maxHoldingTimeMinutes": 90, "warningThresholdMinutes": 60}})
    return PositionFactory(strategy=strategy, symbol="XRP/USDT:USDT", side="short",
                           quantity=Decimal("200"), entry_price=Decimal("0.5"),
                           last_price=Decimal("0.51"), last_price_at=timezone.now(),
                           opened_at=timezone.now() - timedelta(minutes=95), state="CRITICAL")


def rendered(kind: str, position=None, severity: str = "CRITICAL", **context) -> list[str]:
    notification = Notification(kind=kind, severity=severity, context=context,
                                position_id=position.pk if position else None)
    facts = position_facts({position.pk}).get(position.pk) if position else None
    title, body, _ = render(notification, facts)
    return [title, *body.split("\n")]


def test_a_timeout_says_the_limit_the_close_and_the_loss(held):
    ActionFactory(position=held, kind=ActionKind.EMERGENCY_CLOSE, reason="timeout",
                  requested_by="timeout")
    title, what, position, numbers, close, link = rendered("position_timeout", held)
    assert title == f"CRITICAL: Position timed out · XRP/USDT:USDT short #{held.pk}"
    assert what == "Held 95 min: the 90-min holding limit is reached."
    assert position == (f"Position #{held.pk} XRP/USDT:USDT short 200 @ 0.5 · strategy "
                        f"xrp-scalp-5m · account {held.strategy.account.name}")
    assert numbers == ("Price 0.51 at 2026-03-02 12:00:00 UTC · unrealised PnL -2.00 (-2.00 %, "
                       "before fees) · state CRITICAL · held 95 min, 5 min past its limit "
                       "(limit 90 min)")
    assert close.startswith("Emergency close queued (timeout, by timeout, action #")
    assert link == f"https://trading.example.test/positions/{held.pk}/"


def test_a_timeout_with_automatic_closes_off_asks_the_trader_to_act(held):
    held.strategy.live_trading["lifecycle"]["enableAutomaticTimeout"] = False
    held.strategy.save()
    what = rendered("position_timeout", held)[1]
    assert what.endswith("Automatic timeout is off for this strategy: close it yourself "
                         "(admin, API or manage.py close_position).")


def test_a_warning_says_how_long_is_left(held, clock):
    clock.shift(timedelta(minutes=-30))  # 65 min held
    assert rendered("position_warning", held, "WARNING")[1] == (
        "Held 65 min: past the 60-min warning threshold; it times out at 90 min (25 min left).")


def test_a_closed_position_gives_its_realised_result(held):
    what = rendered("position_closed", held, "WARNING", exit_reason="timeout",
                    exit_price="0.5120000000", pnl="-2.4560000000", pnl_percent="-2.456000",
                    fees="0.0560000000", holding_seconds=5700)[1]
    assert what == ("Closed (timeout) at 0.512: realised PnL -2.46 (-2.46 %) net of 0.056 fees, "
                    "held 95 min.")


def test_an_order_that_failed_names_the_order_the_reason_and_what_remains(held):
    what = rendered("order_failed", held, client_order_id="o-1f2e", purpose="exit", side="buy",
                    quantity="200", filled_quantity="50", symbol="XRP/USDT:USDT",
                    account="bybit-main", status="failed",
                    error="gave up after 3 retries: exchange unavailable")[1]
    assert what == ("Exit order o-1f2e (buy 200 XRP/USDT:USDT on bybit-main) ended failed, 50 "
                    "of 200 filled: gave up after 3 retries: exchange unavailable. The position "
                    "is still held.")


def test_a_platform_stop_that_did_not_finish_says_what_to_check():
    title, what = rendered("platform_stopping", None, mode="embedded", host="vps1", pid=7,
                           reason="SIGTERM", clean=False)
    assert title == "CRITICAL: Platform stopping"
    assert what == ("embedded on vps1 (pid 7) is stopping (SIGTERM): the shutdown sequence did "
                    "NOT finish: check the snapshot, open orders and positions before trading "
                    "again. Positions are not supervised by this process any more.")


def test_an_alert_of_a_kind_added_later_is_still_told():
    assert rendered("invariant_violated", None, message="order o-1 placed twice") == [
        "CRITICAL: A promise is broken", "order o-1 placed twice"]
    assert rendered("some_new_kind", None, message="what happened") == [
        "CRITICAL: Some new kind", "what happened"]


def test_numbers_read_as_a_trader_writes_them():
    assert [number(v) for v in (Decimal("0.51230000"), Decimal("100"), Decimal("1E+2"),
                                None, "-0")] == ["0.5123", "100", "100", "?", "0"]
    assert [duration(s) for s in (45, 119, 120, 7199, 7200, 200000)] == [
        "45 s", "119 s", "2 min", "119 min", "2 h 00 min", "2 d 7 h"]
