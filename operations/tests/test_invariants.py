"""The promises as code: each check finds the state that breaks its promise, with the evidence,
and stays quiet while the platform is within its allowances (grace, doubt, backoff)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from execution.exchanges.base import OrderRequest
from execution.exchanges.errors import TransientError
from execution.models import Action, ActionKind, ActionState, Order, OrderStatus
from execution.pipeline import order_submit
from execution.services import order_place, run_inline
from guard.models import GuardTrip, TradingScope
from guard.services import scope_get, scope_state_set
from lifecycle.models import Position
from operations import invariants
from operations.invariants import (
    EXCHANGE_UNREADABLE,
    FILLS_MATCH,
    INVARIANT_ALERT,
    INVARIANTS,
    POSITIONS_CLOSED_IN_TIME,
    REALERT,
    TRIPS_HELD,
    UNCHECKED_ALERT,
    Violation,
    active_orders_known,
    alert_violations,
    check_all,
    client_ids_once,
    fills_match,
    net_positions_match,
    positions_closed_in_time,
    trips_held,
)
from operations.tests.conftest import (
    START,
    SYMBOL,
    accepted_then_crashed,
    configure,
    open_entry,
)
from risk.models import RiskAlert
from tradingsite.testing.factories import PositionFactory, StrategyFactory

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)
CLEAN = {name: [] for name in INVARIANTS}


def filled_entry(strategy, quantity: str = "0.5") -> Order:
    """A market entry filled on the paper exchange: its position is open on both sides."""
    return order_place(drive=run_inline(sleep=lambda s: None), account=strategy.account,
                       strategy=strategy, symbol=SYMBOL, side="buy", quantity=Decimal(quantity))


@pytest.fixture
def overdue(clock, paper_strategy):
    """0.5 BTC held exactly 240 min + the 60 s grace: due at 11:59, the grace over at 12:00."""
    return PositionFactory(strategy=paper_strategy, symbol=SYMBOL, quantity=Decimal("0.5"),
                           opened_at=START - timedelta(minutes=241))


# --- 1. positions closed in time ------------------------------------------------------------

def test_a_position_past_its_limit_and_the_grace_without_a_close_is_a_violation(overdue):
    assert positions_closed_in_time(now=START - timedelta(seconds=1)) == []

    [found] = positions_closed_in_time(now=START)

    assert found == Violation(
        POSITIONS_CLOSED_IN_TIME, f"position {overdue.pk}",
        "held past its limit of 240 min (due 2026-03-02 11:59:00), no close in flight "
        "(0 closes so far)",
        {"position": overdue.pk, "strategy": "recovery-strategy", "symbol": SYMBOL,
         "state": "OPEN", "quantity": "0.5", "opened_at": "2026-03-02T07:59:00+00:00",
         "max_holding_minutes": 240, "due_at": "2026-03-02T11:59:00+00:00", "closes": 0,
         "last_close_ended_at": None, "retry_due_at": None, "attention": None},
        position_id=overdue.pk)


def test_an_open_close_action_or_an_active_exit_order_is_a_close_in_flight(overdue):
    action = Action.objects.create(kind=ActionKind.EMERGENCY_CLOSE, position=overdue,
                                   reason="timeout", idempotency_key="timeout:x:0")
    assert positions_closed_in_time(now=START) == []

    order_submit(account=overdue.strategy.account, strategy=overdue.strategy, position=overdue,
                 symbol=SYMBOL, side="sell", quantity=Decimal("0.5"), purpose="emergency_close",
                 reduce_only=True)
    Action.objects.filter(pk=action.pk).update(state=ActionState.FAILED,
                                               finished_at=START - timedelta(hours=1))
    assert positions_closed_in_time(now=START) == []  # the order is still active


def test_a_failed_close_counts_as_in_flight_until_its_requeue_is_due_plus_the_grace(overdue):
    Action.objects.create(kind=ActionKind.EMERGENCY_CLOSE, position=overdue, reason="timeout",
                          idempotency_key="timeout:x:0", state=ActionState.FAILED,
                          finished_at=START)
    # one close so far: the timeout pass asks again 1 min after it ended
    assert positions_closed_in_time(now=START + 2 * MINUTE - timedelta(seconds=1)) == []

    [found] = positions_closed_in_time(now=START + 2 * MINUTE)

    assert found.message == ("held past its limit of 240 min (due 2026-03-02 11:59:00), no "
                             "close in flight (1 closes so far, the last ended 12:00:00)")
    assert (found.evidence["closes"], found.evidence["retry_due_at"]) == (
        1, "2026-03-02T12:01:00+00:00")


def test_a_strategy_without_automatic_timeout_promises_no_close(clock, paper_account):
    manual = StrategyFactory(name="manual-only", account=paper_account, live_trading={
        "lifecycle": {"enableAutomaticTimeout": False}})
    PositionFactory(strategy=manual, symbol=SYMBOL, opened_at=START - timedelta(days=3))

    assert positions_closed_in_time(now=START) == []


# --- 2. each client order id at most once on the exchange -----------------------------------

def test_a_client_order_id_twice_on_the_exchange_is_a_violation(clock, paper_strategy, paper):
    entry = filled_entry(paper_strategy)
    assert client_ids_once() == []
    paper.orders["paper-9"] = replace(paper.orders["paper-1"], id="paper-9")

    [found] = client_ids_once()

    assert (found.subject, found.message) == (
        f"client order id {entry.client_order_id}",
        "on paper-recovery 2 times: paper-1 closed filled 0.5, paper-9 closed filled 0.5")
    assert found.evidence == {"account": "paper-recovery",
                              "client_order_id": entry.client_order_id,
                              "exchange_ids": ["paper-1", "paper-9"], "filled": ["0.5", "0.5"]}
    assert found.position_id == entry.position_id == Position.objects.get().pk


# --- 3. active orders known to the exchange, or in doubt for less than their grace ---------

def test_an_order_in_doubt_unknown_to_the_exchange_breaks_the_promise_after_its_grace(
        clock, paper_strategy, paper):
    filled_entry(paper_strategy)  # the book holds something: it did not restart
    doubtful = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                            symbol=SYMBOL, side="buy", quantity=Decimal("0.2"))
    Order.objects.filter(pk=doubtful.pk).update(status=OrderStatus.UNKNOWN, attempts=1,
                                                in_doubt_since=START, doubt_lookups=3)
    # inDoubtGraceSeconds (30) + the 60 s grace
    assert active_orders_known(now=START + timedelta(seconds=89)) == []
    finds = paper.calls["find"]

    [found] = active_orders_known(now=START + timedelta(seconds=90))

    assert paper.calls["find"] == finds + 1  # looked up by client id before it counts
    assert (found.subject, found.message) == (
        f"order {doubtful.client_order_id}",
        "unknown in the database, unknown to paper-recovery; in doubt since 12:00:00 "
        "(3 lookups missed); allowed until 12:01:30")
    assert found.evidence == {
        "order": doubtful.pk, "client_order_id": doubtful.client_order_id,
        "account": "paper-recovery", "symbol": SYMBOL, "purpose": "entry", "status": "unknown",
        "created_at": "2026-03-02T12:00:00+00:00", "in_doubt_since": "2026-03-02T12:00:00+00:00",
        "doubt_lookups": 3, "allowed_until": "2026-03-02T12:01:30+00:00"}


def test_an_order_never_sent_may_wait_for_its_order_timeout_plus_the_grace(
        clock, paper_strategy, paper):
    filled_entry(paper_strategy)
    never_sent = order_submit(account=paper_strategy.account, strategy=paper_strategy,
                              symbol=SYMBOL, side="buy", quantity=Decimal("0.2"))
    assert active_orders_known(now=START + timedelta(seconds=89)) == []

    [found] = active_orders_known(now=START + timedelta(seconds=90))

    assert found.message == ("created in the database, unknown to paper-recovery; not in "
                             "doubt; allowed until 12:01:30")
    assert found.subject == f"order {never_sent.client_order_id}"


def test_an_order_the_exchange_has_open_but_the_database_ended_is_unsupervised(
        clock, paper_account, paper_strategy):
    configure(paper_account, faults=[{"on": "place", "kind": "stay_open"}])
    resting = open_entry(paper_strategy)
    Order.objects.filter(pk=resting.pk).update(status=OrderStatus.EXPIRED, finalized_at=START)
    assert active_orders_known(now=START + timedelta(seconds=59)) == []

    [found] = active_orders_known(now=START + timedelta(seconds=60))

    assert found.message == ("open on paper-recovery (paper-1, filled 0 of 0.5) but expired in "
                             "the database since 12:00:00: nobody supervises it")
    assert (found.evidence["exchange_status"], found.evidence["finalized_at"]) == (
        "open", "2026-03-02T12:00:00+00:00")


# --- 4. fills per order ---------------------------------------------------------------------

def test_a_close_the_database_declared_absent_that_filled_on_the_exchange_is_a_violation(
        clock, paper_strategy, paper):
    # the duplicate emergency close: the first close filled, the database said absent
    position = PositionFactory(strategy=paper_strategy, symbol=SYMBOL, quantity=Decimal("0.4"))
    close = accepted_then_crashed(paper_strategy, paper, quantity="0.4", side="sell",
                                  purpose="emergency_close", position=position)
    Order.objects.filter(pk=close.pk).update(status=OrderStatus.EXPIRED, finalized_at=START,
                                             error_code="unknown_to_exchange")

    [found] = fills_match()

    assert (found.subject, found.message) == (
        f"order {close.client_order_id}",
        "filled 0 in the database (expired), 0.4 on paper-recovery (closed)")
    assert found.evidence == {
        "order": close.pk, "client_order_id": close.client_order_id, "account": "paper-recovery",
        "symbol": SYMBOL, "purpose": "emergency_close", "status": "expired",
        "database_filled": "0", "exchange_filled": "0.4", "exchange_status": "closed",
        "exchange_id": "paper-1"}
    assert found.position_id == position.pk


def test_an_order_on_the_exchange_the_database_does_not_hold_is_a_violation(
        clock, paper_strategy, paper):
    filled_entry(paper_strategy)
    paper.place_order(OrderRequest(symbol=SYMBOL, side="sell", order_type="market",
                                   amount=Decimal("0.1"), client_order_id="by-hand-1"))

    [found] = fills_match()

    assert (found.subject, found.message) == (
        "exchange order paper-2", "on paper-recovery (by-hand-1, sell 0.1 BTC/USDT:USDT, closed, "
                                  "filled 0.1), not in the database")


def test_a_fill_the_pipeline_has_not_read_yet_counts_only_once_nobody_wrote_the_order(
        clock, paper_account, paper_strategy, paper):
    configure(paper_account, faults=[{"on": "place", "kind": "stay_open"}])
    resting = open_entry(paper_strategy)
    paper.orders["paper-1"].filled = Decimal("0.2")  # filled meanwhile, not polled yet
    assert fills_match(now=START + timedelta(seconds=59)) == []

    [found] = fills_match(now=START + timedelta(seconds=60))

    assert found.message == "filled 0 in the database (open), 0.2 on paper-recovery (open)"
    assert found.subject == f"order {resting.client_order_id}"


# --- 5. net positions -------------------------------------------------------------------------

def test_a_net_position_the_exchange_does_not_hold_is_a_violation_once_no_order_moves(
        clock, paper_strategy, paper):
    entry = filled_entry(paper_strategy)
    paper.positions[SYMBOL].size = Decimal("0.3")
    assert net_positions_match(now=START + timedelta(seconds=59)) == []  # the entry just wrote

    [found] = net_positions_match(now=START + timedelta(seconds=60))

    position = Position.objects.get()
    assert (found.subject, found.message) == (
        f"paper-recovery {SYMBOL}",
        f"net 0.5 in the database (positions [{position.pk}]), 0.3 on the exchange")
    assert found.evidence == {"account": "paper-recovery", "symbol": SYMBOL,
                              "database_net": "0.5", "exchange_net": "0.3",
                              "positions": [position.pk]}
    assert (found.position_id, entry.position_id) == (position.pk, position.pk)


# --- 6. a tripped scope stays tripped until an operator re-arms it ---------------------------

def tripped(label: str, state: str) -> GuardTrip:
    """``label`` tripped by its daily loss into ``state``, as the evaluation writes it."""
    scope = scope_get(label)
    TradingScope.objects.filter(pk=scope.pk).update(
        state=state, trip_code="DAILY_LOSS", state_by="guard", state_since=START,
        state_reason="daily loss 210 reached dailyLossLimitAmount 200")
    return GuardTrip.objects.create(scope=scope, code="DAILY_LOSS", tripped_at=START,
                                    message="daily loss 210 reached dailyLossLimitAmount 200",
                                    state_before="ACTIVE", state_after=state)


def test_a_tripped_scope_loosened_without_a_re_arm_breaks_the_promise(clock, paper_strategy):
    trip = tripped("account:paper-recovery", "REDUCING")
    scope_state_set(scope=scope_get("account:paper-recovery"), state="HALTED",
                    reason="stricter while we look", actor="alice")
    assert trips_held() == []  # stricter keeps the trip open, and holds it

    TradingScope.objects.filter(pk=trip.scope_id).update(state="ACTIVE", state_by="sql")
    [found] = trips_held()

    assert found == Violation(
        TRIPS_HELD, f"account:paper-recovery trip {trip.pk}",
        "DAILY_LOSS trip of 2026-03-02 12:00:00 set REDUCING, the scope is ACTIVE (set by sql "
        "at 12:00:00) and was never re-armed",
        {"scope": "account:paper-recovery", "trip": trip.pk, "code": "DAILY_LOSS",
         "tripped_at": "2026-03-02T12:00:00+00:00", "trip_state": "REDUCING",
         "state": "ACTIVE", "state_by": "sql", "state_since": "2026-03-02T12:00:00+00:00",
         "rearmed_at": None, "rearmed_by": ""})
    assert [v.subject for v in check_all()[TRIPS_HELD]] == [found.subject]


def test_an_operators_re_arm_keeps_the_promise_and_one_without_an_operator_breaks_it(
        clock, paper_strategy):
    platform = tripped("global", "HALTED")
    account = tripped("account:paper-recovery", "HALTED")
    scope_state_set(scope=scope_get("global"), state="ACTIVE", reason="loss accepted",
                    actor="alice")
    assert trips_held() == []  # the platform re-armed, the account still halted by its trip
    assert GuardTrip.objects.get(pk=platform.pk).rearmed_by == "alice"

    GuardTrip.objects.filter(pk=account.pk).update(rearmed_at=START)
    TradingScope.objects.filter(pk=account.scope_id).update(state="ACTIVE", trip_code="")
    [found] = trips_held()

    assert (found.subject, found.message) == (
        f"account:paper-recovery trip {account.pk}",
        "DAILY_LOSS trip re-armed at 2026-03-02 12:00:00 without an operator")


# --- all of them --------------------------------------------------------------------------------

def test_a_round_trip_keeps_every_promise(clock, paper_strategy, paper):
    filled_entry(paper_strategy)

    assert check_all() == CLEAN
    assert check_all(grace=timedelta(0)) == CLEAN


def test_an_exchange_that_cannot_be_read_is_unchecked_not_broken(clock, paper_strategy):
    filled_entry(paper_strategy)

    def unreachable(account):
        raise TransientError("connection refused", code="connection_dropped")

    result = check_all(exchange_of=unreachable)

    assert {name: found for name, found in result.items() if found} == {
        EXCHANGE_UNREADABLE: [Violation(
            EXCHANGE_UNREADABLE, "account paper-recovery",
            "not checked: TransientError: connection refused",
            {"account": "paper-recovery", "reason": "TransientError: connection refused"})]}


def test_a_paper_book_that_restarted_with_the_process_is_not_compared(clock, paper_strategy):
    filled_entry(paper_strategy)
    from execution.exchanges.paper import reset_paper_exchanges

    reset_paper_exchanges()

    [found] = check_all()[EXCHANGE_UNREADABLE]
    assert found.message == "not checked: the paper book restarted empty with this process"


# --- the alert ----------------------------------------------------------------------------------

def test_the_alert_is_raised_once_kept_quiet_while_the_evidence_stays_and_resolved_after(
        clock, overdue, monkeypatch):
    pushed = []
    monkeypatch.setattr("risk.services.broadcast", lambda event, payload: pushed.append(event))
    result = {**CLEAN, POSITIONS_CLOSED_IN_TIME: positions_closed_in_time(now=START)}

    first = alert_violations(result, now=START)

    alert = RiskAlert.objects.get(kind=INVARIANT_ALERT)
    assert (first.raised, alert.position_id, alert.severity, pushed) == (
        1, overdue.pk, "CRITICAL", ["alert.raised"])
    assert alert.message == (
        "1 violation of the platform's promises:\n"
        f"- positions_closed_in_time: position {overdue.pk}: held past its limit of 240 min "
        "(due 2026-03-02 11:59:00), no close in flight (0 closes so far)")

    for minutes in range(1, 60):  # the same evidence every minute for an hour: quiet
        again = alert_violations(result, now=START + minutes * MINUTE)
        assert (again.raised, again.unchanged) == (0, 1)
    alert.refresh_from_db()
    assert (alert.occurrences, alert.last_seen, pushed) == (1, START, ["alert.raised"])

    assert alert_violations(result, now=START + REALERT).raised == 1  # after a while: again
    Action.objects.create(kind=ActionKind.CLOSE, position=overdue, reason="manual",
                          idempotency_key="k", state=ActionState.FAILED, finished_at=START)
    changed = {**CLEAN, POSITIONS_CLOSED_IN_TIME: positions_closed_in_time(
        now=START + REALERT + MINUTE)}
    assert alert_violations(changed, now=START + REALERT + MINUTE).raised == 1  # new evidence
    alert.refresh_from_db()
    assert (alert.occurrences, len(pushed)) == (3, 3)
    assert "(1 closes so far, the last ended 12:00:00)" in alert.message

    gone = alert_violations(CLEAN, now=START + 2 * REALERT)

    assert gone.resolved == 1
    assert RiskAlert.objects.get(pk=alert.pk).resolved_at == START + 2 * REALERT
    assert pushed[-1] == "alert.resolved"


def test_violations_without_a_position_share_one_alert_and_unreadable_exchanges_warn(clock):
    violation = Violation(FILLS_MATCH, "exchange order x-1", "on acct (…), not in the database",
                          {"exchange_id": "x-1"})
    unread = Violation(EXCHANGE_UNREADABLE, "account acct", "not checked: timeout",
                       {"account": "acct"})

    outcome = alert_violations({**CLEAN, FILLS_MATCH: [violation],
                                EXCHANGE_UNREADABLE: [unread]}, now=START)

    assert outcome.as_dict() == {"violations": 1, "unchecked": 1, "raised": 2, "unchanged": 0,
                                 "resolved": 0}
    alerts = {a.kind: a for a in RiskAlert.objects.all()}
    assert (alerts[INVARIANT_ALERT].position_id, alerts[INVARIANT_ALERT].severity) == (
        None, "CRITICAL")
    assert (alerts[UNCHECKED_ALERT].severity, alerts[UNCHECKED_ALERT].message) == (
        "WARNING", "1 violation of the platform's promises:\n- exchange_unreadable: account "
                   "acct: not checked: timeout")


def test_the_beat_task_checks_and_alerts(clock, overdue, paper_strategy):
    from operations.tasks import PERIODIC_TASKS, check_invariants

    assert [(s.task, s.every_seconds) for s in PERIODIC_TASKS] == [
        ("operations.tasks.check_invariants", 60), ("operations.tasks.prune_live_outbox", 60)]
    # the paper book of this process holds nothing yet: that account is unchecked (WARNING)
    assert check_invariants.run() == {"violations": 1, "unchecked": 1, "raised": 2,
                                      "unchanged": 0, "resolved": 0}
    assert check_invariants.run()["unchanged"] == 2
    assert sorted(RiskAlert.objects.values_list("kind", "severity")) == [
        (UNCHECKED_ALERT, "WARNING"), (INVARIANT_ALERT, "CRITICAL")]


# --- the command --------------------------------------------------------------------------------

def test_the_command_prints_each_promise_and_exits_1_on_a_violation(clock, overdue, capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("check_invariants")

    assert exited.value.code == 1
    assert capsys.readouterr().out.splitlines() == [
        "positions_closed_in_time: 1 violations",
        f"  position {overdue.pk}: held past its limit of 240 min (due 2026-03-02 11:59:00), no "
        "close in flight (0 closes so far)",
        "client_ids_once: holds", "active_orders_known: holds", "fills_match: holds",
        "net_positions_match: holds", "trips_held: holds",
        "exchange_unreadable: 1 accounts not checked",
        "  account paper-recovery: not checked: the paper book restarted empty with this "
        "process"]


def test_the_command_exits_0_when_every_promise_holds(clock, paper_strategy, capsys):
    filled_entry(paper_strategy)

    call_command("check_invariants", "--grace", "0")

    assert capsys.readouterr().out.splitlines() == [
        "positions_closed_in_time: holds", "client_ids_once: holds",
        "active_orders_known: holds", "fills_match: holds", "net_positions_match: holds",
        "trips_held: holds"]


def test_the_command_exits_2_when_an_exchange_could_not_be_read(clock, paper_strategy, capsys,
                                                                 monkeypatch):
    filled_entry(paper_strategy)
    monkeypatch.setattr(invariants, "exchange_for", lambda account: (_ for _ in ()).throw(
        TransientError("read timed out", code="timeout")))

    with pytest.raises(SystemExit) as exited:
        call_command("check_invariants", "--json")

    assert exited.value.code == 2
    assert '"reason": "TransientError: read timed out"' in capsys.readouterr().out


# --- the check after each integration scenario ------------------------------------------------

def test_the_scenario_check_holds_faults_back_and_leaves_out_handed_over_markets(
        clock, paper_account, paper_strategy, paper):
    from tradingsite.testing.promises import check_promises

    filled_entry(paper_strategy)
    PositionFactory(strategy=paper_strategy, symbol=SYMBOL, quantity=Decimal("0.3"))  # handed over
    configure(paper_account, faults=[{"on": "any", "kind": "timeout", "times": 5}])

    check = check_promises(now=START + MINUTE)

    assert (check.violations, check.accounts_read, check.unreadable) == ([], ["paper-recovery"],
                                                                        [])
    assert check.markets_not_compared == [("paper-recovery", SYMBOL)]  # 0.8 held, 0.5 there
    with pytest.raises(TransientError):  # the scenario's faults are all still queued
        paper.fetch_ticker(SYMBOL)


def test_the_scenario_check_reports_what_is_broken(clock, paper_strategy, paper):
    from tradingsite.testing.promises import check_promises

    filled_entry(paper_strategy)
    paper.positions[SYMBOL].size = Decimal("0.2")

    [found] = check_promises(now=START + MINUTE).violations

    assert str(found) == (f"net_positions_match: paper-recovery {SYMBOL}: net 0.5 in the "
                          f"database (positions [{Position.objects.get().pk}]), 0.2 on the "
                          "exchange")


def test_the_beat_check_reads_a_ccxt_exchange_with_a_short_timeout(paper_account, paper):
    from operations.invariants import CHECK_TIMEOUT_MS, checking_exchange
    from tradingsite.testing.factories import ExchangeAccountFactory

    bybit = ExchangeAccountFactory(name="bybit-check", exchange_id="bybit")

    assert checking_exchange(bybit).cfg.timeout_ms == CHECK_TIMEOUT_MS == 3000
    assert checking_exchange(paper_account) is paper
