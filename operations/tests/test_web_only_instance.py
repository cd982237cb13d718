"""A web-only ``runplatform`` (``--no-worker --no-beat``) neither halts nor resumes trading.

The issue's repro: stopping one web-only instance halted trading for every process
sharing the database, until an operator resumed it.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from execution.models import Order, OrderStatus
from operations.recovery import platform_recover
from operations.runtime import PlatformOptions, runs_trading
from operations.shutdown import platform_shutdown
from operations.state_files import pid_file_write, pid_path
from operations.tests.conftest import START, configure, open_entry
from tradingsite.models import ReconciliationReport, StateSnapshot
from tradingsite.services import is_trading_halted, platform_state, trading_halt

pytestmark = pytest.mark.django_db(transaction=True)

STAY_OPEN = {"on": "place", "kind": "stay_open", "times": 5}
WEB_ONLY_STOP = ("    web-only instance: trading left running (the halting shutdown runs where "
                 "the worker or beat runs, or with shutdown_platform --run-here)")


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.STATE_DIR = tmp_path / "state"


def _platform(*, worker: bool, beat: bool, lines: list[str]) -> SimpleNamespace:
    return SimpleNamespace(seconds_left=lambda: 10.0, stop_reason="SIGTERM",
                           options=PlatformOptions(run_worker=worker, run_beat=beat,
                                                   shutdown_timeout=10.0),
                           force_requested=threading.Event(), out=lines.append)


@pytest.mark.parametrize(("worker", "beat", "expected"), [
    (True, True, True), (True, False, True), (False, True, True), (False, False, False)])
def test_an_instance_runs_trading_when_it_runs_the_worker_or_beat(worker, beat, expected):
    assert runs_trading(PlatformOptions(run_worker=worker, run_beat=beat)) is expected


def test_stopping_a_web_only_instance_halts_nothing_and_cancels_nothing(paper_strategy, clock):
    configure(paper_strategy.account, faults=[STAY_OPEN])
    order = open_entry(paper_strategy)
    pid_file_write(START)
    lines: list[str] = []

    platform_shutdown(_platform(worker=False, beat=False, lines=lines))

    assert lines == [WEB_ONLY_STOP]
    assert is_trading_halted() is False
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN
    assert not StateSnapshot.objects.exists()
    assert not pid_path().exists()


@pytest.mark.parametrize(("worker", "beat"), [(True, False), (False, True)])
def test_stopping_an_instance_with_the_worker_or_beat_runs_the_halting_shutdown(
        paper_strategy, clock, worker, beat):
    configure(paper_strategy.account, faults=[STAY_OPEN])
    order = open_entry(paper_strategy)
    lines: list[str] = []

    platform_shutdown(_platform(worker=worker, beat=beat, lines=lines))

    state = platform_state()
    assert (state.trading_halted, state.halt_reason) == (True, "shutdown")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    assert StateSnapshot.objects.get().clean is True


def test_starting_a_web_only_instance_does_not_lift_a_shutdown_halt(paper_strategy, clock):
    trading_halt(reason="shutdown", actor="shutdown")
    lines: list[str] = []

    platform_recover(_platform(worker=False, beat=False, lines=lines))

    assert lines == ["    web-only instance: no reconciliation, trading state left as it is "
                     "(recovery runs where the worker or beat runs)"]
    state = platform_state()
    assert (state.trading_halted, state.halt_reason) == (True, "shutdown")
    assert not ReconciliationReport.objects.exists()
    assert pid_path().exists()
