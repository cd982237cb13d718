"""The randomized fault harness on both venues (see ``tests/faults/machine.py``).

In ``make test`` it runs a fixed, derandomized budget per venue (profile ``ci``);
``make fuzz`` (``HYPOTHESIS_PROFILE=fuzz``) runs a long randomized one. Interleavings
it found are kept below as replayed step lists.
"""

from __future__ import annotations

import itertools
import os
import time
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from execution.models import Order
from execution.tests.bybit_emulator import BybitEmulator
from guard.models import GuardTrip
from guard.services import scope_get
from lifecycle.models import Position, PositionState
from tests.faults.machine import (
    STATS,
    FaultHarness,
    Pick,
    install_crash_points,
    route_tasks_to_the_harness,
)
from tests.faults.venues import BybitVenue, PaperVenue

# A failure is shrunk to its shortest step list, which can take minutes.
pytestmark = [pytest.mark.django_db, pytest.mark.faults, pytest.mark.timeout(1800)]

QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# CI: the same examples every run, about a minute per venue (an example on the emulator
# costs more: HTTP, and a quarter second per timed-out request).
CI_EXAMPLES = {"paper": 24, "bybit": 16}


def harness_settings(venue: str) -> settings:
    """``ci`` (default; derandomized, fixed budget) or ``fuzz`` (``HYPOTHESIS_PROFILE``)."""
    common = {"deadline": None, "database": None, "suppress_health_check": QUIET,
              "print_blob": True}
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "fuzz":  # make fuzz: new examples, long
        return settings(derandomize=False, stateful_step_count=50, max_examples=int(
            os.environ.get("FAULT_EXAMPLES", "1000")), **common)
    return settings(derandomize=True, stateful_step_count=25, max_examples=int(
        os.environ.get("FAULT_EXAMPLES", CI_EXAMPLES[venue])), **common)


@pytest.fixture(scope="module")
def emulator():
    with BybitEmulator(hold_seconds=0.5) as emu:
        yield emu


@pytest.fixture
def harness(monkeypatch, settings):
    settings.EXCHANGE_TIMEOUT_MS = 250  # a held-back answer costs a quarter second
    settings.EXCHANGE_ENABLE_RATE_LIMIT = False
    monkeypatch.setenv("EXCHANGE_HARNESS_BYBIT_KEY", "emulator-key")
    monkeypatch.setenv("EXCHANGE_HARNESS_BYBIT_SECRET", "emulator-secret")
    install_crash_points(monkeypatch)
    route_tasks_to_the_harness(monkeypatch)


def machine_on(venue) -> type[FaultHarness]:
    return type(f"FaultHarness_{venue.name}", (FaultHarness,),
                {"venue": venue, "runs": itertools.count()})


def replay(venue, steps: list[tuple[str, dict]]) -> None:
    """Run a step list the harness found, checking the promises after each step."""
    state = machine_on(venue)()
    try:
        state.promises_hold()
        for name, arguments in steps:
            getattr(state, name)(**arguments)
            state.promises_hold()
    finally:
        state.teardown()


def run_harness(venue) -> None:
    """Run the machine; a failure says which example first broke a promise, and when."""
    STATS.restart()
    try:
        run_state_machine_as_test(machine_on(venue), settings=harness_settings(venue.name))
    finally:
        first = STATS.first_failure
        print(f"fault harness on {venue.name}: {STATS.examples} examples run in "
              f"{time.monotonic() - STATS.started:.1f} s" + (
                  f"; a promise first broke in example {first[0]}, {first[1]:.1f} s in"
                  if first else ""))


def test_the_promises_hold_under_faults_on_the_paper_exchange(harness):
    run_harness(PaperVenue())


def test_the_promises_hold_under_faults_on_bybit_through_ccxt(harness, emulator):
    run_harness(BybitVenue(emulator))


# --- interleavings the harness found, replayed ------------------------------------------------

# The close of a long while a larger short of the same symbol was held: the reduce-only
# sell could not reduce the net short position, the database counted the long closed
# (net positions: database 0.004, exchange 0.001). Closes of a symbol held both ways
# now go as plain orders (``lifecycle.order_events.close_reduce_only``).
OPPOSITE_POSITIONS = [
    ("first_entry", {"side": "buy", "lots": 3}),
    *[("recovery_runs_beside_the_workers", {})] * 8,
    ("enter", {"keyed": False, "limit": False, "lots": 4, "side": "sell"}),
    ("a_worker_will_die", {"point": "after_send", "redeliver": True}),
    ("operator_closes", {"data": Pick(0), "emergency": False}),
    ("a_moment_passes", {"seconds": 5}),
    ("operator_closes", {"data": Pick(0), "emergency": False}),
    ("client_retries", {"data": Pick(0)}),
    ("price_moves", {"percent": -1}),
    # the first order's first step again (its id depends on the database's sequence)
    ("a_task_is_delivered_twice", {"data": Pick(where=lambda m: m.short_name == "drive_order")}),
    ("a_worker_will_die", {"point": "after_send", "redeliver": False}),
    ("a_moment_passes", {"seconds": 10}),
    ("enter", {"keyed": True, "limit": False, "lots": 4, "side": "buy"}),
    ("operator_closes", {"data": Pick(0), "emergency": True}),
    ("recovery_runs_beside_the_workers", {}),
    ("operator_closes", {"data": Pick(1), "emergency": True}),
    ("operator_closes", {"data": Pick(1), "emergency": True}),
    ("a_moment_passes", {"seconds": 1}),
]


def test_found_closing_one_side_of_a_symbol_held_both_ways_on_paper(harness):
    replay(PaperVenue(), OPPOSITE_POSITIONS)


def test_found_closing_one_side_of_a_symbol_held_both_ways_on_bybit(harness, emulator):
    replay(BybitVenue(emulator), OPPOSITE_POSITIONS)



# The account's maxOrdersPerMinute 3 set after the run's first entry: the gate's rate window
# held only the entries it had counted itself, so a fourth entry went through within the
# minute. A ledger that starts counting now takes the entries of the last minute from the
# database (``guard.gate._Counted.recount``).
RATE_LIMIT_SET_MID_MINUTE = [
    ("first_entry", {"side": "buy", "lots": 5, "max_retries": 3}),
    ("guard_limits", {"max_open": None, "max_rate": 3}),
    ("a_moment_passes", {"seconds": 1}),
    ("enter", {"keyed": True, "limit": False, "lots": 7, "side": "buy", "then": 1}),
    *[("a_moment_passes", {"seconds": 1})] * 3,
    ("enter", {"keyed": False, "limit": False, "lots": 1, "side": "buy", "then": 0}),
    ("a_task_is_delivered_twice", {"data": Pick(where=lambda m: m.short_name == "drive_order")}),
    *[("a_moment_passes", {"seconds": 1})] * 2,
    ("enter", {"keyed": False, "limit": False, "lots": 1, "side": "buy", "then": 0}),
]


def test_found_a_rate_limit_set_mid_minute_on_paper(harness):
    replay(PaperVenue(), RATE_LIMIT_SET_MID_MINUTE)


# The guard in the harness, step by step: the strategy's limit refuses the entry over it,
# a halted strategy refuses entries while its position still times out and closes, a
# reducing account refuses them too, and the account's rate limit counts the last minute.
def test_the_guard_refuses_and_closes_go_on_in_the_harness(harness):
    state = machine_on(PaperVenue())()
    try:
        state.guard_limits(max_open=2, max_rate=3)
        state.first_entry(side="buy", lots=1)
        state.enter(side="buy", lots=2, limit=True, keyed=True)  # rests: an entry on its way
        state.enter(side="sell", lots=1, limit=False, keyed=True)
        state.operator_sets_state(scope="strategy", state="HALTED")
        state.enter(side="buy", lots=1, limit=False, keyed=False)
        state.time_passes(seconds=150)  # the resting entry expires, the position times out
        held_while_halted = Position.objects.filter(state__in=PositionState.active()).count()
        closed_while_halted = list(Position.objects.values_list("state", "close_reason"))
        state.operator_sets_state(scope="strategy", state="ACTIVE")
        state.operator_sets_state(scope="account", state="REDUCING")
        state.enter(side="buy", lots=1, limit=False, keyed=False)
        state.operator_sets_state(scope="account", state="ACTIVE")
        state.enter(side="buy", lots=1, limit=False, keyed=True)
        state.enter(side="sell", lots=1, limit=False, keyed=True)
        state.a_moment_passes(seconds=5)
        state.enter(side="buy", lots=1, limit=False, keyed=False)
        for _ in range(2):
            state.operator_closes(data=Pick(0), emergency=False, then=5)
        state.enter(side="buy", lots=1, limit=False, keyed=False)  # the third in 20 s
        state.enter(side="sell", lots=1, limit=False, keyed=False)
        state.promises_hold()
    finally:
        state.teardown()

    steps = [line.split(" ", 1)[1] for line in state.log.lines]
    assert [step.split(" → ")[0] for step in steps
            if step.startswith(("enter", "operator sets", "limits"))] == [
        "limits: maxOpenPositions 2, maxOrdersPerMinute 3",
        "enter buy 0.001 market",
        "enter buy 0.002 limit",
        "enter sell 0.001 refused MAX_OPEN_POSITIONS",
        "operator sets strategy:harness HALTED",
        "enter buy 0.001 refused TRADING_HALTED",
        "operator sets strategy:harness ACTIVE",
        "operator sets account:paper-harness REDUCING",
        "enter buy 0.001 refused REDUCING_ONLY",
        "operator sets account:paper-harness ACTIVE",
        "enter buy 0.001 market",
        "enter sell 0.001 market",
        "enter buy 0.001 refused MAX_OPEN_POSITIONS",
        "enter buy 0.001 market",
        "enter sell 0.001 refused ORDER_RATE",
    ]
    assert (held_while_halted, closed_while_halted) == (0, [("CLOSED", "timeout")])


def test_a_trip_closes_every_position_and_holds_until_re_armed_in_the_harness(harness):
    state = machine_on(PaperVenue())()
    try:
        state.guard_limits(max_open=None, max_rate=None, daily_loss=1, on_trip="REDUCING",
                           close_all=True)
        state.first_entry(side="buy", lots=10)
        state.enter(side="sell", lots=2, limit=True, keyed=False)  # rests above the market
        state.a_moment_passes(seconds=5)  # the day's starting equity is counted
        state.price_moves(percent=-1, then=5)  # 0.01 BTC 500 lower: −5 USDT, the limit is 1
        trip = GuardTrip.objects.get()
        held_after_trip = Position.objects.filter(state__in=PositionState.active()).count()
        resting_after_trip = list(Order.objects.filter(order_type="limit").values_list(
            "status", "filled_quantity"))
        state.enter(side="buy", lots=1, limit=False, keyed=False)
        state.time_passes(seconds=60)
        still_tripped = scope_get("account:paper-harness").state
        state.operator_sets_state(scope="account", state="ACTIVE")
        state.enter(side="buy", lots=1, limit=False, keyed=False)
        state.promises_hold()
        trip.refresh_from_db()
    finally:
        state.teardown()

    steps = [line.split(" ", 1)[1].split(" → ")[0] for line in state.log.lines]
    assert [step for step in steps if step.startswith(("enter", "operator sets"))] == [
        "enter buy 0.010 market",
        "enter sell 0.002 limit",
        "enter buy 0.001 refused DAILY_LOSS",
        "operator sets account:paper-harness ACTIVE (DAILY_LOSS trip)",
        "enter buy 0.001 market",
    ]
    assert (trip.code, trip.state_after, trip.close_all, trip.closes_requested) == (
        "DAILY_LOSS", "REDUCING", True, 1)
    assert (held_after_trip, still_tripped, trip.rearmed_by) == (0, "REDUCING", "operator")
    assert resting_after_trip == [("cancelled", Decimal("0"))]  # flat: nothing on its way
