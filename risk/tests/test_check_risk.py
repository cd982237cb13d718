"""The periodic risk check end to end on the database (risk.services.run_risk_check)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from execution.models import Action, ActionKind
from lifecycle.models import Position, PositionState
from lifecycle.services import position_begin_close, position_request_close
from risk.models import HealthSnapshot, RiskAlert, StrategyRiskCheck
from risk.services import risk_check_run
from risk.tasks import check_risk
from risk.tests.conftest import CLOSES, NOW, SMALL_WINDOWS, VOLUMES, add_candles, open_position
from tradingsite.testing.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def refetch(position):
    return Position.objects.get(pk=position.pk)


def test_a_check_scores_the_position_and_writes_snapshot_score_and_prices(
        frozen, risk_strategy, live_events):
    position = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)

    result = risk_check_run()

    assert result.positions == 1
    assert result.strategies == ["scalper"]
    assert result.levels == {"SAFE": 0, "WARNING": 1, "CRITICAL": 0}
    snapshot = HealthSnapshot.objects.get(position=position)
    # time 75, drawdown 2 % of 5 % → 60, volume 60/100 → 60, volatility ratio 2 → 50,
    # profitability (−0.04 % − 0.1 % fees + 3) / 6 → 47.67;
    # 0.2·75 + 0.3·60 + 0.2·60 + 0.15·50 + 0.15·47.667 = 59.65
    assert (snapshot.time_score, snapshot.drawdown_score, snapshot.volume_score,
            snapshot.volatility_score, snapshot.profitability_score) == (
        Decimal("75.00"), Decimal("60.00"), Decimal("60.00"), Decimal("50.00"), Decimal("47.67"))
    assert snapshot.score == Decimal("59.65")
    assert snapshot.danger_level == "WARNING"
    assert snapshot.price == Decimal("99.96")
    assert snapshot.taken_at == NOW
    assert (snapshot.data_complete, snapshot.missing) == (True, [])
    position = refetch(position)
    assert (position.health_score, position.danger_level, position.health_checked_at) == (
        Decimal("59.65"), "WARNING", NOW)
    assert (position.peak_price, position.trough_price) == (Decimal("102"), Decimal("99.96"))
    assert (position.last_price, position.last_price_at) == (Decimal("99.96"), NOW)
    assert position.state == PositionState.OPEN  # the lifecycle state is time-driven
    check = StrategyRiskCheck.objects.get(strategy=risk_strategy)
    assert (check.last_checked_at, check.positions_checked) == (NOW, 1)

    health = [payload for event, payload in live_events if event == "health.updated"]
    assert health == [{"checked_at": NOW, "positions": [{
        "id": position.pk, "strategy": "scalper", "symbol": "ETH/USDT:USDT", "side": "long",
        "state": "OPEN", "score": 59.65,
        "components": {"time_at_risk": 75.0, "drawdown": 60.0, "volume": 60.0,
                       "volatility": 50.0, "profitability": 47.67},
        "danger_level": "WARNING", "minutes_to_timeout": 180.0,
        "last_price": str(position.last_price),
        # 2 × 100 × (−0.14 %)
        "unrealised_pnl": -0.28, "data_complete": True, "missing": [],
        "checked_at": "2026-01-05T12:00:00Z"}]}]


def test_each_strategy_is_checked_once_per_check_interval(frozen, risk_strategy):
    open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    assert risk_check_run().positions == 1
    # 5 candles × 5 minutes
    frozen.move_to(NOW + timedelta(minutes=24, seconds=59))
    assert risk_check_run().positions == 0
    assert risk_check_run(force=True).positions == 1  # a forced check restarts the interval
    frozen.move_to(NOW + timedelta(minutes=49, seconds=58))
    assert risk_check_run().positions == 0
    frozen.move_to(NOW + timedelta(minutes=49, seconds=59))
    assert risk_check_run().positions == 1
    assert HealthSnapshot.objects.count() == 3


def test_the_check_interval_follows_the_strategy_timeframe_and_config(frozen, account):
    hourly = StrategyFactory(account=account, timeframe="1h",
                             live_trading={"riskMonitoring": {"checkIntervalCandles": 2}})
    open_position(hourly)
    assert risk_check_run().positions == 1
    frozen.move_to(NOW + timedelta(minutes=119))
    assert risk_check_run().positions == 0
    frozen.move_to(NOW + timedelta(minutes=120))
    assert risk_check_run().positions == 1


def test_strategies_with_monitoring_disabled_are_skipped(frozen, account):
    off = StrategyFactory(account=account, live_trading={"riskMonitoring": {"enabled": False}})
    open_position(off)
    assert risk_check_run(force=True).positions == 0
    assert not HealthSnapshot.objects.exists()


def _scenario(strategy, symbols):
    for symbol in symbols:
        add_candles(symbol, CLOSES, VOLUMES)
    for i in range(len(symbols) * 4):
        open_position(strategy, symbol=symbols[i % len(symbols)])


def test_a_check_runs_a_constant_number_of_queries(frozen, account):
    small, large = (StrategyFactory(account=account, live_trading=SMALL_WINDOWS) for _ in "ab")
    _scenario(small, ["A/USDT"])
    _scenario(large, ["B/USDT", "C/USDT", "D/USDT", "E/USDT"])
    counts = []
    for strategy in (small, large):
        with CaptureQueriesContext(connection) as queries:
            result = risk_check_run(strategy_ids=[strategy.pk])
        assert result.levels["WARNING"] == result.positions  # every position raises an alert
        counts.append(len(queries))
    # strategies, check rows (create + lock), positions, candles, position update, snapshots,
    # open alerts, new alerts (in a savepoint: 3), check rows update, transaction
    assert counts[0] == counts[1]
    assert counts[0] == 14


def test_a_repeated_condition_refreshes_one_alert_and_recovery_resolves_it(
        frozen, risk_strategy, live_events):
    position = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    risk_check_run()
    frozen.move_to(NOW + timedelta(minutes=1))
    risk_check_run(force=True)

    alert = RiskAlert.objects.get(position=position)
    assert (alert.kind, alert.severity, alert.occurrences) == ("danger_warning", "WARNING", 2)
    assert (alert.first_seen, alert.last_seen) == (NOW, NOW + timedelta(minutes=1))
    # a minute later time at risk is 74.58: 59.65 − 0.2·0.42 = 59.57
    assert alert.message == "Health score 59.57 is below the warning threshold 60."
    assert [e for e, _ in live_events].count("alert.raised") == 1

    # the price recovers to the peak: drawdown 100, profit (2 − 0.1 + 3)/6 → the position is SAFE
    add_candles("ETH/USDT:USDT", ["102"], ["100"], end=NOW + timedelta(minutes=5))
    frozen.move_to(NOW + timedelta(minutes=5))
    result = risk_check_run(force=True)
    assert result.levels["SAFE"] == 1
    alert.refresh_from_db()
    assert alert.resolved_at == NOW + timedelta(minutes=5)
    resolved = [p for e, p in live_events if e == "alert.resolved"]
    assert [(p["id"], p["kind"], p["symbol"], p["is_open"]) for p in resolved] == [
        (alert.pk, "danger_warning", "ETH/USDT:USDT", False)]
    # it comes back: a new alert, not the resolved one reopened
    add_candles("ETH/USDT:USDT", ["98"], ["100"], end=NOW + timedelta(minutes=10))
    frozen.move_to(NOW + timedelta(minutes=10))
    risk_check_run(force=True)
    assert RiskAlert.objects.filter(position=position, kind="danger_warning").count() == 2
    assert RiskAlert.objects.filter(position=position, resolved_at__isnull=True).count() == 1


def test_escalation_to_critical_replaces_the_warning_alert_and_a_collapse_is_its_own_alert(
        frozen, risk_strategy):
    position = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    risk_check_run()
    # 40 minutes later the price fell 5 % from the peak and volume dried up
    add_candles("ETH/USDT:USDT", ["97", "96.9"], ["0", "0"], end=NOW + timedelta(minutes=10))
    frozen.move_to(NOW + timedelta(minutes=10))
    result = risk_check_run(force=True)

    snapshot = HealthSnapshot.objects.filter(position=position).latest()
    # time 100·(1 − 70/240) = 70.83, drawdown (102 − 96.9)/102 = 5 % → 0, volume 0,
    # volatility: returns of the last 8 → ratio 1.7 → 65.12…, profitability −3.2 % → 0
    assert (snapshot.time_score, snapshot.drawdown_score, snapshot.volume_score,
            snapshot.profitability_score) == (Decimal("70.83"), Decimal("0.00"), Decimal("0.00"),
                                              Decimal("0.00"))
    assert snapshot.danger_level == "CRITICAL"
    assert result.levels["CRITICAL"] == 1
    open_kinds = sorted(RiskAlert.objects.filter(resolved_at__isnull=True)
                        .values_list("kind", "severity"))
    assert open_kinds == [("collapse_drawdown", "WARNING"), ("collapse_profitability", "WARNING"),
                          ("collapse_volume", "WARNING"), ("danger_critical", "CRITICAL")]
    warning = RiskAlert.objects.get(kind="danger_warning")
    assert warning.resolved_at == NOW + timedelta(minutes=10)


def _crash(strategy, minutes_ago=120):
    """A short squeezed 10 % up while volume vanished: critical.

    time 50 (0 past the limit), drawdown 0, volume 0, volatility 100 (a steady climb),
    profitability 0 → 0.2·50 + 0.15·100 = 25.
    """
    position = open_position(strategy, side="short", minutes_ago=minutes_ago)
    add_candles(position.symbol, ["100"] * 7 + ["105", "110"], ["100"] * 7 + ["0", "0"])
    return position


def test_a_critical_position_gets_exactly_one_emergency_close(frozen, risk_strategy):
    position = _crash(risk_strategy)
    result = risk_check_run()
    assert result.levels["CRITICAL"] == 1
    assert result.closes_requested == [position.pk]
    action = Action.objects.get(position=position)
    assert (action.kind, action.reason, action.requested_by, action.state) == (
        ActionKind.EMERGENCY_CLOSE, "risk", "risk", "pending")
    assert position.events.filter(kind="close_requested", actor="risk").count() == 1

    frozen.move_to(NOW + timedelta(minutes=1))
    assert risk_check_run(force=True).closes_requested == []
    assert Action.objects.filter(position=position).count() == 1


def test_no_emergency_close_when_the_strategy_turns_it_off(frozen, account):
    strategy = StrategyFactory(account=account, live_trading={
        "riskMonitoring": {**SMALL_WINDOWS["riskMonitoring"], "emergencyCloseOnCritical": False}})
    _crash(strategy)
    result = risk_check_run()
    assert result.levels["CRITICAL"] == 1
    assert result.closes_requested == []
    assert not Action.objects.exists()
    assert RiskAlert.objects.filter(kind="danger_critical").count() == 1


def _timeout_fires(position):
    """The lifecycle timeout path of the same tick."""
    from lifecycle import services as lifecycle

    if hasattr(lifecycle, "timeout_pass_run"):
        lifecycle.timeout_pass_run()
    else:
        position_request_close(position=position, reason="timeout", actor="timeout")


def test_timeout_then_risk_in_the_same_tick_make_one_close_and_timeout_wins(frozen, risk_strategy):
    position = _crash(risk_strategy, minutes_ago=250)  # past the 240-minute limit
    _timeout_fires(position)
    result = risk_check_run()
    assert result.levels["CRITICAL"] == 1
    assert result.closes_requested == []
    action = Action.objects.get(position=position)
    assert action.reason == "timeout"


def test_risk_then_timeout_in_the_same_tick_make_one_close_and_risk_wins(frozen, risk_strategy):
    position = _crash(risk_strategy, minutes_ago=250)
    assert risk_check_run().closes_requested == [position.pk]
    _timeout_fires(refetch(position))
    action = Action.objects.get(position=position)
    assert action.reason == "risk"


def test_closing_positions_are_scored_for_display_but_raise_nothing(frozen, risk_strategy):
    position = _crash(risk_strategy)
    position_begin_close(position, reason="manual", actor="operator")
    result = risk_check_run()
    assert result.positions == 1
    assert result.levels["CRITICAL"] == 1
    assert refetch(position).danger_level == "CRITICAL"
    assert result.closes_requested == []
    assert not RiskAlert.objects.exists()
    assert not Action.objects.exists()


def test_stale_or_missing_market_data_is_scored_neutral_and_flagged(frozen, risk_strategy):
    stale = open_position(risk_strategy, symbol="OLD/USDT")
    add_candles("OLD/USDT", CLOSES, VOLUMES, end=NOW - timedelta(minutes=20))  # 4 candles ago
    unknown = open_position(risk_strategy, symbol="NEW/USDT", minutes_ago=10)
    risk_check_run()

    old = HealthSnapshot.objects.get(position=stale)
    # no fresh candle and the entry price is an hour old: only time at risk is known
    assert old.missing == ["drawdown", "volume", "volatility", "profitability"]
    assert old.data_complete is False
    assert (old.time_score, old.drawdown_score, old.volume_score) == (
        Decimal("75.00"), Decimal("50.00"), Decimal("50.00"))
    assert old.price is None
    # 0.2·75 + 0.8·50
    assert old.score == Decimal("55.00")
    new = HealthSnapshot.objects.get(position=unknown)
    # opened 10 minutes ago: its entry price is still a fresh price
    assert new.missing == ["volume", "volatility"]
    assert new.price == Decimal("100")
    assert refetch(unknown).last_price == Decimal("100")


def test_peak_and_trough_include_every_close_since_open_not_only_the_last(frozen, risk_strategy):
    position = open_position(risk_strategy, minutes_ago=20)
    # candles before the open do not count; the spike to 108 closed after it
    add_candles("ETH/USDT:USDT", ["120", "80", "100", "100", "100", "108", "95", "101", "100"])
    risk_check_run()
    position = refetch(position)
    assert (position.peak_price, position.trough_price) == (Decimal("108"), Decimal("95"))


def test_closed_positions_alerts_are_resolved_by_the_next_check(frozen, risk_strategy):
    position = open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    risk_check_run()
    alert = RiskAlert.objects.get(position=position)
    # a close that bypassed the signal (e.g. an import): the next check still resolves it
    Position.objects.filter(pk=position.pk).update(state=PositionState.CLOSED, closed_at=NOW)
    frozen.move_to(NOW + timedelta(minutes=30))
    risk_check_run()
    alert.refresh_from_db()
    assert alert.resolved_at == NOW + timedelta(minutes=30)


def test_the_beat_task_runs_the_check(frozen, risk_strategy):
    open_position(risk_strategy)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    summary = check_risk()
    assert summary["positions"] == 1
    assert summary["levels"] == {"SAFE": 0, "WARNING": 1, "CRITICAL": 0}
    assert summary["checked_at"] == NOW.isoformat()


def test_a_due_strategy_without_held_positions_is_marked_checked(frozen, risk_strategy):
    result = risk_check_run()
    assert (result.strategies, result.positions) == (["scalper"], 0)
    assert StrategyRiskCheck.objects.get(strategy=risk_strategy).last_checked_at == NOW


def test_each_strategy_reads_the_candles_of_its_own_timeframe(frozen, account, risk_strategy):
    hourly = StrategyFactory(account=account, timeframe="1h", live_trading=SMALL_WINDOWS)
    fast = open_position(risk_strategy)
    slow = open_position(hourly, minutes_ago=600)
    add_candles("ETH/USDT:USDT", CLOSES, VOLUMES)
    add_candles("ETH/USDT:USDT", ["100"] * 8 + ["101"], timeframe="1h")
    result = risk_check_run()
    assert result.positions == 2
    assert refetch(fast).last_price == Decimal("99.96")
    assert refetch(slow).last_price == Decimal("101")
    assert refetch(slow).peak_price == Decimal("101")
    # the hourly series: even volume → 100; flat then +1 %: σ_2 = 0.005, σ_8 = 0.0033072
    # → ratio 1.511858 → 74.41
    slow_snapshot = HealthSnapshot.objects.get(position=slow)
    assert (slow_snapshot.volume_score, slow_snapshot.volatility_score) == (
        Decimal("100.00"), Decimal("74.41"))


def test_snapshots_older_than_each_strategys_retention_are_pruned(frozen, account, risk_strategy):
    from risk.tasks import prune_snapshots
    from tradingsite.testing.factories import HealthSnapshotFactory

    short = StrategyFactory(account=account,
                            live_trading={"riskMonitoring": {"snapshotRetentionDays": 1}})
    kept_default, pruned_default = (HealthSnapshotFactory(
        position=open_position(risk_strategy), taken_at=NOW - timedelta(days=days))
        for days in (6.9, 7.1))
    kept_short, pruned_short = (HealthSnapshotFactory(
        position=open_position(short), taken_at=NOW - timedelta(hours=hours))
        for hours in (23, 25))
    assert prune_snapshots() == 2
    assert set(HealthSnapshot.objects.values_list("pk", flat=True)) == {kept_default.pk,
                                                                         kept_short.pk}
    assert not HealthSnapshot.objects.filter(pk__in=[pruned_default.pk, pruned_short.pk]).exists()


def test_a_strategy_with_broken_overrides_is_still_watched_with_the_site_config(frozen, account,
                                                                                caplog):
    broken = StrategyFactory(account=account)
    Strategy = type(broken)
    Strategy.objects.filter(pk=broken.pk).update(
        live_trading={"riskMonitoring": {"healthScoreThreshold": 500}})
    open_position(broken)
    assert risk_check_run().positions == 1
    assert "invalid live-trading overrides" in caplog.text


def test_a_new_strategy_starts_with_a_never_checked_row(account):
    strategy = StrategyFactory(account=account)
    check = StrategyRiskCheck.objects.get(strategy=strategy)
    assert (check.last_checked_at, check.positions_checked) == (None, 0)
