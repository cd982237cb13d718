"""Three signals and two workers racing on the same positions (PostgreSQL, real threads).

The timeout pass, the risk check and an operator ask for the close of the same 40
critical positions at the same instant, each in its own thread and connection; then
two workers process every dispatched action concurrently. Each position must get one
action, one close order on the exchange and one trade.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from celery.app.task import Task
from django.db import connection

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from execution.tasks import process_action
from lifecycle.models import Position, PositionEvent, Trade
from lifecycle.services import position_open, position_request_close, timeout_pass_run
from risk.services import risk_check_run
from tests.integration.conftest import ETH, START, paper_account, strategy_on, write_candles

pytestmark = [pytest.mark.postgres, pytest.mark.integration,
              pytest.mark.django_db(transaction=True)]

POSITIONS = 40
# The candles of test_risk_monitoring: at 20 minutes the score is critical.
CLOSES = ["2500"] * 26 + ["2425", "2450", "2280"]
VOLUMES = ["100"] * 26 + ["50", "40", "30"]
LIMITS = {"lifecycle": {"warningThresholdMinutes": 10, "maxHoldingTimeMinutes": 20},
          "riskMonitoring": {"checkIntervalCandles": 1, "volumeRecentCandles": 2,
                             "volumeLookbackCandles": 4, "volatilityShortCandles": 2,
                             "volatilityLongCandles": 24, "feeRatePercent": 0.05}}


def run_together(*jobs: Callable[[], object]) -> list[BaseException]:
    """Start every job at the same instant on its own thread (and database connection)."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            job()
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.fixture
def dispatched(monkeypatch):
    """Action ids sent to the workers, from any thread."""
    sent: list[int] = []
    lock = threading.Lock()

    def apply_async(task, args=None, kwargs=None, **options):
        with lock:
            if task.name == "execution.tasks.process_action":
                sent.extend(args)
            elif task.name == "lifecycle.tasks.dispatch_actions":
                sent.extend(args[0])

    monkeypatch.setattr(Task, "apply_async", apply_async)
    return sent


def test_timeout_risk_and_operator_racing_then_two_workers_close_each_position_once(
        dispatched):
    account = paper_account()
    strategy = strategy_on(account, "crowded", **LIMITS)
    write_candles(ETH, CLOSES, VOLUMES, end=START + timedelta(minutes=20))
    positions = [position_open(strategy=strategy, symbol=ETH, side="long",
                               quantity=Decimal("1"), entry_price=Decimal("2500"),
                               opened_at=START) for _ in range(POSITIONS)]
    paper_exchange_for(account).set_price(ETH, Decimal("2280"))

    def operator() -> None:
        for position in positions:
            position_request_close(position=position, reason="manual", actor="operator")

    with time_machine.travel(START + timedelta(minutes=20), tick=False):
        assert run_together(timeout_pass_run, lambda: risk_check_run(force=True), operator) == []
        ids = sorted(set(dispatched))
        assert run_together(lambda: [process_action(i) for i in ids],
                            lambda: [process_action(i) for i in reversed(ids)]) == []

    actions = Counter(Action.objects.values_list("position_id", flat=True))
    assert len(actions) == POSITIONS and set(actions.values()) == {1}
    assert set(Action.objects.values_list("state", "attempts")) == {("done", 1)}
    orders = Counter(Order.objects.values_list("position_id", flat=True))
    assert len(orders) == POSITIONS and set(orders.values()) == {1}
    paper = paper_exchange_for(account)
    assert paper.calls["place"] == POSITIONS
    assert Counter(o.client_order_id for o in paper.orders.values()) == Counter(
        Order.objects.values_list("client_order_id", flat=True))
    assert Trade.objects.count() == POSITIONS
    assert set(Position.objects.values_list("state", flat=True)) == {"CLOSED"}
    # whoever asked first won; every position was asked for once
    assert PositionEvent.objects.filter(kind="close_requested").count() == POSITIONS
    reasons = Counter(Trade.objects.values_list("exit_reason", flat=True))
    assert sum(reasons.values()) == POSITIONS and set(reasons) <= {"timeout", "risk", "manual"}
    assert sorted(dispatched) == sorted(Action.objects.values_list("pk", flat=True))


class Gate:
    """An exchange whose lookups and sends first run a hook (to order two workers' steps)."""

    def __init__(self, inner, *, before_find=None, before_place=None):
        self.inner, self.before_find, self.before_place = inner, before_find, before_place

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def find_order(self, client_order_id, symbol):
        if self.before_find:
            self.before_find()
        return self.inner.find_order(client_order_id, symbol)

    def place_order(self, request):
        if self.before_place:
            self.before_place()
        return self.inner.place_order(request)


def test_a_recovery_working_from_a_stale_copy_never_finalises_the_close_a_live_worker_retries():
    """Worker B restarts and reconciles from a copy read before worker A claimed its retry of
    the same close; B's lookup misses (A has not sent yet), A's retry fills."""
    from execution.models import ActionState
    from execution.pipeline import order_submit
    from execution.services import action_claim, order_advance
    from lifecycle.services import position_begin_close
    from operations.recovery import recover
    from risk.models import RiskAlert

    account = paper_account()
    position = position_open(strategy=strategy_on(account, "raced"), symbol=ETH, side="long",
                             quantity=Decimal("1"), entry_price=Decimal("2500"),
                             opened_at=START - timedelta(hours=1))
    account.paper_config = {**account.paper_config,
                            "faults": [{"on": "place", "kind": "timeout"}]}  # before acting
    account.save(update_fields=["paper_config"])
    paper = paper_exchange_for(account)
    with time_machine.travel(START, tick=False) as clock:
        action, _ = position_request_close(position=position, reason="timeout", actor="timeout")
        action_claim(action.pk)
        position_begin_close(position, reason="timeout", actor="timeout")
        order = order_submit(account=account, strategy=position.strategy, position=position,
                             action=action, symbol=ETH, side="sell", quantity=Decimal("1"),
                             purpose="emergency_close", reduce_only=True,
                             client_order_id=f"close-{action.pk}")
        first = order_advance(order)  # A's first attempt: no answer, retry in 1 s
        assert (first.order.status, first.delay) == ("unknown", 1.0)
        clock.shift(1)

        b_loaded, a_claimed, b_done = threading.Event(), threading.Event(), threading.Event()
        worker_a = Gate(paper, before_find=a_claimed.set,
                        before_place=lambda: b_done.wait(timeout=30))

        def b_find():
            b_loaded.set()
            a_claimed.wait(timeout=30)

        reports = []

        def recovering_worker_b() -> None:
            try:
                reports.append(recover(trigger="worker start (B)", exclusive=False,
                                       exchange_of=lambda _: Gate(paper, before_find=b_find),
                                       track=lambda order: None, out=lambda line: None))
            finally:
                b_done.set()

        def live_worker_a() -> None:
            b_loaded.wait(timeout=30)
            order_advance(Order.objects.select_related("account", "strategy", "position",
                                                       "action").get(pk=order.pk),
                          exchange=worker_a)

        assert run_together(recovering_worker_b, live_worker_a) == []

    assert [o.client_order_id for o in paper.orders.values()] == [f"close-{action.pk}"]
    assert paper.calls["place"] == 2  # A's first attempt (never arrived) and its retry
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.exchange_order_id, stored.filled_quantity) == (
        "filled", "paper-1", Decimal("1"))
    assert (stored.attempts, stored.submitted_at) == (2, START)  # never rewritten by B
    [check] = reports[0].data["orders"]
    assert (check["outcome"], check["detail"]) == (
        "left", "moved by another worker meanwhile: left to it")
    assert Action.objects.get(pk=action.pk).state == ActionState.DONE
    assert Position.objects.get(pk=position.pk).state == "CLOSED"
    assert Trade.objects.filter(position=position).count() == 1
    assert not RiskAlert.objects.filter(kind__in=["order_unknown", "fill_unapplied"]).exists()
    with time_machine.travel(START + timedelta(minutes=5), tick=False):
        timeout_pass_run()
    assert Action.objects.count() == 1  # nothing re-queued later
