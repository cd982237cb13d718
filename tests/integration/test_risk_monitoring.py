"""Risk monitoring while a position is held: a price path written candle by candle.

Beat's risk check scores the position every candle; the falling market takes it
SAFE → WARNING → CRITICAL, and the critical score asks for the emergency close
that the action queue executes on the paper exchange.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from lifecycle.models import Position
from lifecycle.services import position_open
from risk.models import HealthSnapshot, RiskAlert
from tests.integration.conftest import ETH, START, paper_account, strategy_on, write_candles

pytestmark = [pytest.mark.django_db, pytest.mark.integration]

RISK_CHECK = "risk.tasks.check_risk"
CANDLE = timedelta(minutes=5)
# Scored every candle on short windows: 2 recent volumes against the 4 before them,
# the last 2 returns against the last 24.
WATCHFUL = {"riskMonitoring": {"checkIntervalCandles": 1, "volumeRecentCandles": 2,
                               "volumeLookbackCandles": 4, "volatilityShortCandles": 2,
                               "volatilityLongCandles": 24, "feeRatePercent": 0.05}}
HISTORY = ["2500"] * 25  # the flat two hours before the entry


class Market:
    """Writes each 5-minute candle as it closes and moves the paper exchange with it."""

    def __init__(self, platform, account, symbol):
        self.platform, self.symbol = platform, symbol
        self.paper = paper_exchange_for(account)
        self.closed_at = START

    def candle(self, close: str, volume: str = "100") -> None:
        """The next candle closes at ``close``; the platform runs until it has closed."""
        self.closed_at += CANDLE
        write_candles(self.symbol, [close], [volume], end=self.closed_at)
        self.paper.set_price(self.symbol, Decimal(close))
        self.platform.run(until=self.closed_at)


@pytest.fixture
def watched(platform):
    account = paper_account()
    strategy = strategy_on(account, "eth-watch", **WATCHFUL)
    write_candles(ETH, HISTORY, end=START)
    position = position_open(strategy=strategy, symbol=ETH, side="long",
                             quantity=Decimal("2"), entry_price=Decimal("2500"))
    platform.schedule(RISK_CHECK, 300)
    return account, position


def levels(position):
    return list(HealthSnapshot.objects.filter(position=position).order_by("taken_at")
                .values_list("score", "danger_level"))


def test_a_falling_market_takes_the_position_from_safe_to_an_emergency_close(
        platform, watched, live_events):
    account, position = watched
    market = Market(platform, account, ETH)

    market.candle("2500")
    assert levels(position) == [(Decimal("91.83"), "SAFE")]
    market.candle("2425", volume="50")
    assert levels(position)[-1] == (Decimal("49.90"), "WARNING")
    market.candle("2450", volume="40")
    assert levels(position)[-1] == (Decimal("48.00"), "WARNING")
    assert Position.objects.get(pk=position.pk).state == "OPEN"
    market.candle("2280", volume="30")

    critical = HealthSnapshot.objects.filter(position=position).latest("taken_at")
    # time at risk 100 × (1 − 20/240) = 91.67; drawdown 8.8 % from the 2 500 peak ≥ 5 % → 0;
    # volume: the last two (40, 30) against the four before (100, 100, 100, 50) → 40;
    # volatility: σ of the last 2 returns (+1.03 %, −6.94 %) over σ of the last 24 = 2.63
    # → 100 × (3 − 2.63) / 2 = 18.27; profitability: −8.8 % − 0.1 % fees ≤ −3 % → 0;
    # 0.2 × 91.67 + 0.2 × 40 + 0.15 × 18.27 = 29.07 < 30
    assert (critical.time_score, critical.drawdown_score, critical.volume_score,
            critical.volatility_score, critical.profitability_score) == (
        Decimal("91.67"), Decimal("0.00"), Decimal("40.00"), Decimal("18.27"), Decimal("0.00"))
    assert (critical.score, critical.danger_level, critical.price) == (
        Decimal("29.07"), "CRITICAL", Decimal("2280"))

    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.close_reason, position.close_requested_by) == (
        "CLOSED", "risk", "risk")
    action = Action.objects.get()
    assert (action.kind, action.reason, action.state, action.created_at) == (
        "emergency_close", "risk", "done", START + 4 * CANDLE)
    assert list(Order.objects.values_list("client_order_id", "side", "quantity", "status",
                                          "average_fill_price")) == [
        (f"close-{action.pk}", "sell", Decimal("2"), "filled", Decimal("2279.77"))]
    trade = position.trade
    # (2 279.77 − 2 500) × 2 − exit fee 2 × 2 279.77 × 0.055 % (2.507747)
    assert (trade.exit_reason, trade.exit_price, trade.pnl, trade.holding_seconds) == (
        "risk", Decimal("2279.7700000000"), Decimal("-442.9677470000"), 20 * 60)
    assert [(p.client_order_id, p.status) for p in paper_exchange_for(account).orders.values()
            ] == [(f"close-{action.pk}", "closed")]
    # raised when a component or the score crossed its threshold, resolved when it
    # recovered (profitability at 2 450, volatility at 2 280) or with the close
    assert list(RiskAlert.objects.order_by("first_seen", "kind").values_list(
        "kind", "first_seen", "resolved_at")) == [
        ("collapse_profitability", START + 2 * CANDLE, START + 3 * CANDLE),
        ("danger_warning", START + 2 * CANDLE, START + 4 * CANDLE),
        ("collapse_volatility", START + 3 * CANDLE, START + 4 * CANDLE),
        ("collapse_drawdown", START + 4 * CANDLE, START + 4 * CANDLE),
        ("collapse_profitability", START + 4 * CANDLE, START + 4 * CANDLE),
        ("danger_critical", START + 4 * CANDLE, START + 4 * CANDLE)]

    health = [p["positions"][0]["danger_level"] for e, p in live_events
              if e == "health.updated"]
    assert health == ["SAFE", "WARNING", "WARNING", "CRITICAL"]
    closing = [(e, p.get("state")) for e, p in live_events if e.startswith("position.")]
    assert closing == [("position.opened", "OPEN"), ("position.state_changed", "CLOSING"),
                       ("position.state_changed", "CLOSED"), ("position.closed", "CLOSED")]


def test_a_position_that_recovers_is_back_to_safe_with_its_alerts_resolved_and_kept_open(
        platform, watched):
    account, position = watched
    market = Market(platform, account, ETH)

    market.candle("2500")
    market.candle("2425", volume="50")
    market.candle("2520", volume="120")
    market.candle("2520")

    assert [level for _, level in levels(position)] == ["SAFE", "WARNING", "SAFE", "SAFE"]
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.danger_level, position.peak_price) == (
        "OPEN", "SAFE", Decimal("2520"))
    assert not Action.objects.exists()
    assert not paper_exchange_for(account).orders
    assert list(RiskAlert.objects.order_by("first_seen", "kind").values_list(
        "kind", "first_seen", "resolved_at")) == [
        ("collapse_profitability", START + 2 * CANDLE, START + 3 * CANDLE),
        ("danger_warning", START + 2 * CANDLE, START + 3 * CANDLE),
        ("collapse_volatility", START + 3 * CANDLE, START + 4 * CANDLE)]


def test_without_emergency_close_on_critical_the_operator_closes_from_the_api(
        platform, watched, client, staff_user):
    account, position = watched
    position.strategy.live_trading = {"riskMonitoring": {
        **WATCHFUL["riskMonitoring"], "emergencyCloseOnCritical": False}}
    position.strategy.save(update_fields=["live_trading"])
    market = Market(platform, account, ETH)
    for close, volume in (("2500", "100"), ("2425", "50"), ("2450", "40"), ("2280", "30")):
        market.candle(close, volume)
    assert levels(position)[-1] == (Decimal("29.07"), "CRITICAL")
    assert not Action.objects.exists()
    critical = RiskAlert.objects.get(kind="danger_critical")
    assert (critical.severity, critical.resolved_at) == ("CRITICAL", None)

    client.force_login(staff_user)
    response = client.post(f"/api/lifecycle/positions/{position.pk}/close",
                           {"note": "critical score, closing by hand"},
                           content_type="application/json")
    platform.run()

    assert response.status_code == 202
    action = Action.objects.get()
    assert response.json() == {"position": position.pk, "action_id": action.pk,
                               "action_state": "pending", "created": True}
    assert (action.reason, action.requested_by, action.state) == ("manual", "operator", "done")
    trade = Position.objects.get(pk=position.pk).trade
    assert (trade.exit_reason, trade.exit_price) == ("manual", Decimal("2279.7700000000"))
    assert RiskAlert.objects.filter(resolved_at__isnull=True).count() == 0
    note = position.events.get(kind="close_requested")
    assert (note.reason, note.actor) == ("manual: close requested — critical score, closing by "
                                         "hand", "operator")


def test_risk_and_timeout_asking_at_the_same_moment_make_one_close(platform, watched):
    account, position = watched
    position.strategy.live_trading = {**WATCHFUL, "lifecycle": {
        "warningThresholdMinutes": 10, "maxHoldingTimeMinutes": 20}}
    position.strategy.save(update_fields=["live_trading"])
    platform.schedule("lifecycle.tasks.check_timeouts", 300)
    market = Market(platform, account, ETH)
    for close, volume in (("2500", "100"), ("2425", "50"), ("2450", "40"), ("2280", "30")):
        market.candle(close, volume)

    # at 20 minutes the timeout pass (beat sends it first) and the critical score both
    # ask for the close; the risk check finds the timeout's action open and adds none
    snapshot = HealthSnapshot.objects.filter(position=position).latest("taken_at")
    assert (snapshot.danger_level, snapshot.taken_at) == ("CRITICAL", START + 4 * CANDLE)
    action = Action.objects.get()
    assert (action.reason, action.requested_by, action.state) == ("timeout", "timeout", "done")
    assert Order.objects.count() == 1
    assert len(paper_exchange_for(account).orders) == 1
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.trade.exit_reason) == ("CLOSED", "timeout")
    assert list(position.events.filter(kind="close_requested").values_list("actor", flat=True)
                ) == ["timeout"]
