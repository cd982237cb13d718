"""Trips on live equity: daily loss and drawdown, per account and for the platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from execution.gates import OrderRefused
from execution.models import Action, ActionKind
from execution.pipeline import order_submit
from guard.models import GuardTrip, TradingScope
from guard.services import guard_evaluate, scope_get, scope_portfolio_set, scope_state_set
from guard.tests.conftest import BTC, close_of, entry, held
from lifecycle.models import Position
from risk.models import RiskAlert
from tradingsite.models import AuditEvent, PlatformState
from tradingsite.testing.factories import ExchangeAccountFactory, StrategyFactory, TradeFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def mark(position, price: str) -> None:
    """The risk check (or a ticker) saw a new price."""
    Position.objects.filter(pk=position.pk).update(last_price=Decimal(price),
                                                   last_price_at=datetime.now(UTC))


def scope(label: str) -> TradingScope:
    return TradingScope.objects.get(pk=scope_get(label).pk)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def test_an_unrealised_loss_alone_trips_the_daily_limit(book_strategy, limits, clock):
    limits(dailyLossLimitPercent=2)
    [position] = held(book_strategy, quantity=Decimal("0.5"), entry_price=Decimal("50000"),
                      last_price=Decimal("50000"))
    guard_evaluate()  # the day starts at 10,000
    clock.shift(60)
    mark(position, "49580")  # −210 = −2.1 %, nothing realised

    result = guard_evaluate()

    assert result.trips == ["global: DAILY_LOSS", "account:guarded: DAILY_LOSS"]
    account = scope("account:guarded")
    assert (account.state, account.trip_code, account.state_by) == ("HALTED", "DAILY_LOSS",
                                                                    "guard")
    assert (account.equity, account.day_start_equity) == (Decimal("9790"), Decimal("10000"))
    trip = GuardTrip.objects.get(scope=account)
    assert trip.message == ("daily loss 210 = 2.1% of the day's starting equity 10000 reached "
                            "dailyLossLimitPercent 2%")
    assert (trip.numbers["loss"], trip.numbers["loss_percent"], trip.numbers["limit"]) == (
        "210", "2.1", "2")
    assert (trip.state_before, trip.state_after, trip.close_all) == ("ACTIVE", "HALTED", False)
    alert = RiskAlert.objects.get(kind="guard_tripped")
    assert (alert.severity, alert.position_id, alert.resolved_at) == ("CRITICAL", None, None)
    assert list(AuditEvent.objects.filter(action="trading_state.trip").values_list(
        "target_repr", flat=True).order_by("id")) == ["global HALTED", "account:guarded HALTED"]
    assert PlatformState.objects.get().trading_halted
    with pytest.raises(OrderRefused) as info:
        entry(book_strategy)
    assert (info.value.reason_code, info.value.scope) == ("DAILY_LOSS", "global")
    assert info.value.numbers["trip"]["loss_percent"] == "2.1"
    assert close_of(position).pk is not None  # supervision and closes go on


def test_equity_that_recovers_does_not_re_arm(book_strategy, limits, clock):
    limits(dailyLossLimitAmount=100)
    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"))
    guard_evaluate()
    mark(position, "880")
    guard_evaluate()
    mark(position, "1200")  # back above the day's start

    clock.shift(3600)
    result = guard_evaluate()

    account = scope("account:guarded")
    assert result.trips == []
    assert (account.state, account.trip_code, account.equity) == ("HALTED", "DAILY_LOSS",
                                                                  Decimal("10200"))
    assert GuardTrip.objects.filter(rearmed_at__isnull=True).count() == 2
    assert AuditEvent.objects.filter(action="trading_state.trip").count() == 2
    assert not AuditEvent.objects.filter(action="trading_state.rearm").exists()
    with pytest.raises(OrderRefused):
        entry(book_strategy)


def test_an_operator_re_arms_with_a_reason_and_the_accepted_loss_does_not_trip_again(
        book_strategy, limits, clock):
    limits(dailyLossLimitAmount=100)
    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"))
    guard_evaluate()
    mark(position, "850")
    guard_evaluate()

    scope_state_set(scope=scope_get("account:guarded"), state="ACTIVE",
                    reason="loss reviewed, hedge in place", actor="alice")
    still_tripped = scope("global")
    scope_state_set(scope=scope_get("global"), state="ACTIVE", reason="reviewed", actor="alice")
    clock.shift(60)
    result = guard_evaluate()

    account = scope("account:guarded")
    assert still_tripped.trip_code == "DAILY_LOSS"
    assert result.trips == []
    assert (account.state, account.trip_code, account.day_start_equity, account.peak_equity) == (
        "ACTIVE", "", Decimal("9850"), Decimal("9850"))
    trip = GuardTrip.objects.get(scope=account)
    assert (trip.rearmed_by, trip.rearm_reason) == ("alice", "loss reviewed, hedge in place")
    rearm = AuditEvent.objects.filter(action="trading_state.rearm").order_by("id").first()
    assert (rearm.before["state"], rearm.after["state"], rearm.before["day_start_equity"],
            rearm.after["day_start_equity"]) == ("HALTED", "ACTIVE", "10000.0000000000",
                                                 "9850.0000000000")
    assert RiskAlert.objects.get(kind="guard_tripped").resolved_at is not None
    assert entry(book_strategy).pk is not None


def test_resume_trading_does_not_re_arm_a_tripped_platform(book_strategy, limits, clock):
    from tradingsite.errors import ConflictError
    from tradingsite.services import trading_resume

    limits(dailyLossLimitAmount=100)
    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"))
    guard_evaluate()
    mark(position, "800")
    guard_evaluate()

    with pytest.raises(ConflictError, match="an operator re-arms it with a reason"):
        trading_resume(actor="bob")
    assert scope("global").state == "HALTED"


def test_drawdown_is_measured_from_the_peak_not_from_the_start(book_strategy, limits, clock):
    limits(maxDrawdownPercent=5)
    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"))
    guard_evaluate()  # 10,000
    mark(position, "2000")
    guard_evaluate()  # peak 11,000
    mark(position, "1460")  # 10,460: +4.6 % on the day, −4.9 % from the peak
    assert guard_evaluate().trips == []
    mark(position, "1440")  # 10,440: −5.09 % from the peak

    result = guard_evaluate()

    assert result.trips == ["global: DRAWDOWN", "account:guarded: DRAWDOWN"]
    trip = GuardTrip.objects.get(scope__kind="account")
    assert (trip.numbers["peak_equity"], trip.numbers["drawdown_percent"]) == (
        "11000", "5.0909")


def test_the_trading_day_begins_at_midnight_in_time_zone(book_strategy, limits, settings):
    settings.TIME_ZONE = "America/New_York"
    limits(dailyLossLimitPercent=3)
    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"))
    evening = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # 18:30 in New York
    with time_machine.travel(evening, tick=False) as clock:
        guard_evaluate()
        mark(position, "800")  # −2 % on 2 March
        guard_evaluate()
        clock.move_to(datetime(2026, 3, 3, 5, 1, tzinfo=UTC))  # 00:01 on 3 March in New York
        guard_evaluate()  # the new day starts at 9,800
        mark(position, "600")  # −2.04 % today, −4 % since yesterday
        assert guard_evaluate().trips == []
        mark(position, "500")  # −3.06 % today
        result = guard_evaluate()

    account = scope("account:guarded")
    assert result.trips == ["global: DAILY_LOSS", "account:guarded: DAILY_LOSS"]
    assert (str(account.day), account.day_start_equity) == ("2026-03-03", Decimal("9800"))


def test_realised_and_partial_exits_count_in_equity(book_strategy, limits, clock):
    TradeFactory(strategy=book_strategy, pnl=Decimal("-150"))
    held(book_strategy, quantity=Decimal("1"), initial_quantity=Decimal("2"),
         entry_price=Decimal("1000"), entry_fee=Decimal("1.1"), closed_quantity=Decimal("1"),
         exit_value=Decimal("1100"), exit_fees=Decimal("0.6"), last_price=Decimal("1050"))

    guard_evaluate()

    # 10,000 − 150 + (1,100 − 1,000 − 1.1 − 0.6) + (1,050 − 1,000)
    assert scope("account:guarded").equity == Decimal("9998.3")


def test_close_all_on_trip_closes_every_position_of_the_tripped_account_only(
        book_strategy, limits, clock):
    scope_portfolio_set(scope=scope_get("account:guarded"), actor="alice", reason="tighter", overrides={
        "dailyLossLimitAmount": 100, "closeAllOnTrip": True, "onTrip": "REDUCING"})
    losing, other = held(book_strategy, 2, quantity=Decimal("1"), entry_price=Decimal("1000"),
                         last_price=Decimal("1000"))
    elsewhere = StrategyFactory(name="elsewhere", account=ExchangeAccountFactory(
        name="elsewhere", starting_capital=Decimal("1000000")))
    [untouched] = held(elsewhere, quantity=Decimal("1"), entry_price=Decimal("1000"),
                       last_price=Decimal("1000"))
    guard_evaluate()
    mark(losing, "850")

    result = guard_evaluate()

    account = scope("account:guarded")
    assert result.trips == ["account:guarded: DAILY_LOSS"]  # the platform has no limit
    assert account.state == "REDUCING"
    actions = Action.objects.order_by("position_id")
    assert [(a.position_id, a.kind, a.reason, a.requested_by) for a in actions] == [
        (losing.pk, ActionKind.EMERGENCY_CLOSE, "risk", "guard"),
        (other.pk, ActionKind.EMERGENCY_CLOSE, "risk", "guard")]
    trip = GuardTrip.objects.get()
    assert (trip.closes_requested, trip.closes_requested_at is not None) == (2, True)
    assert guard_evaluate().closes_requested == 0  # requested once per trip
    assert not Action.objects.filter(position=untouched).exists()


def resting_entry(strategy):
    return order_submit(account=strategy.account, strategy=strategy, symbol=BTC, side="buy",
                        quantity=Decimal("0.01"), order_type="limit", price=Decimal("49000"))


def test_close_all_on_trip_cancels_the_tripped_accounts_resting_entries(
        book_strategy, limits, clock):
    """Flat means no position and none on its way: a resting entry that filled after the
    close-all would open a position in a tripped scope."""
    scope_portfolio_set(scope=scope_get("account:guarded"), actor="alice", reason="tighter",
                        overrides={"dailyLossLimitAmount": 100, "closeAllOnTrip": True})
    [losing] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                    last_price=Decimal("1000"))
    resting = resting_entry(book_strategy)
    elsewhere = StrategyFactory(name="elsewhere", account=ExchangeAccountFactory(
        name="elsewhere", starting_capital=Decimal("1000000")))
    untouched = resting_entry(elsewhere)
    guard_evaluate()
    mark(losing, "850")

    result = guard_evaluate()

    assert (result.closes_requested, result.entries_cancelled) == (1, 1)
    assert sorted((a.kind, a.position_id, a.order_id, a.requested_by)
                  for a in Action.objects.all()) == [
        (ActionKind.CANCEL_ORDER, None, resting.pk, "guard"),
        (ActionKind.EMERGENCY_CLOSE, losing.pk, None, "guard")]
    assert guard_evaluate().entries_cancelled == 0  # once per trip
    assert not Action.objects.filter(order=untouched).exists()
    assert AuditEvent.objects.filter(action="order.cancel_request", actor="guard").count() == 1


def test_a_position_that_appears_in_a_tripped_close_all_scope_is_closed_too(
        book_strategy, limits, clock):
    """An entry in doubt that turns out filled, or a hand-over: flat while tripped."""
    limits(dailyLossLimitAmount=100, closeAllOnTrip=True)
    [losing] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                    last_price=Decimal("1000"))
    guard_evaluate()
    mark(losing, "850")
    assert guard_evaluate().closes_requested == 1
    clock.shift(5)
    [late] = held(book_strategy, quantity=Decimal("0.1"), entry_price=Decimal("1000"),
                  last_price=Decimal("1000"))

    assert guard_evaluate().closes_requested == 1
    assert guard_evaluate().closes_requested == 0  # each position once
    assert sorted(Action.objects.values_list("position_id", "requested_by")) == [
        (losing.pk, "guard"), (late.pk, "guard")]
    # the platform and the account tripped together: the account's trip asked first
    assert sorted(GuardTrip.objects.values_list("scope__kind", "closes_requested")) == [
        ("account", 2), ("global", 0)]


def test_a_close_all_interrupted_half_way_is_finished_by_the_next_evaluation(
        book_strategy, limits, clock, monkeypatch):
    from guard import services

    limits(dailyLossLimitAmount=100, closeAllOnTrip=True)
    positions = held(book_strategy, 3, quantity=Decimal("1"), entry_price=Decimal("1000"),
                     last_price=Decimal("1000"))
    guard_evaluate()
    mark(positions[0], "800")
    real, calls = services.position_request_close, []

    def dies_on_the_second(**kwargs):
        calls.append(kwargs["position"].pk)
        if len(calls) == 2:
            raise SystemExit("worker killed")
        return real(**kwargs)

    monkeypatch.setattr(services, "position_request_close", dies_on_the_second)
    with pytest.raises(SystemExit):
        guard_evaluate()
    monkeypatch.setattr(services, "position_request_close", real)

    assert Action.objects.count() == 1
    assert guard_evaluate().closes_requested == 2
    assert sorted(Action.objects.values_list("position_id", flat=True)) == [
        p.pk for p in positions]
    assert GuardTrip.objects.filter(scope__kind="account").get().closes_requested == 2


def test_a_trip_leaves_a_stricter_state_an_operator_set(book_strategy, limits, clock):
    limits(dailyLossLimitAmount=100, onTrip="REDUCING")
    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"))
    scope_state_set(scope=scope_get("account:guarded"), state="HALTED", reason="manual",
                    actor="alice")
    guard_evaluate()
    mark(position, "800")

    guard_evaluate()

    account = scope("account:guarded")
    assert (account.state, account.trip_code) == ("HALTED", "DAILY_LOSS")
    assert GuardTrip.objects.get(scope=account).state_after == "HALTED"


def test_marks_and_their_age_are_reported(book_strategy, clock):
    from tradingsite.testing.factories import CandleFactory

    [position] = held(book_strategy, quantity=Decimal("1"), entry_price=Decimal("1000"),
                      last_price=Decimal("1000"), last_price_at=T0 - timedelta(minutes=20))
    held(book_strategy, symbol="NEW/USDT:USDT", quantity=Decimal("1"),
         entry_price=Decimal("10"), last_price=None)
    CandleFactory(symbol=position.symbol, exchange_id="paper", timeframe="5m",
                  open_time=T0 - timedelta(minutes=10), close=Decimal("1100"))

    guard_evaluate()

    account = scope("account:guarded")
    # the candle that closed 5 minutes ago is newer than the position's own mark
    assert account.equity == Decimal("10100")
    assert (account.marks_as_of, account.unmarked_positions) == (T0 - timedelta(minutes=5), 1)
