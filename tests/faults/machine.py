"""The randomized fault harness: a hypothesis state machine over the whole platform.

Each run starts an empty platform in virtual time (``tests.integration.harness``: broker,
worker and beat in this thread, the clock moved with time-machine) on one venue — the
paper exchange or real ``ccxt.bybit`` against the Bybit emulator — and interleaves what
happens to a trading platform:

- entries (market, and limit orders that rest), opened positions, operator closes,
  risk closes, holding-time timeouts (the clock moves; the strategy holds 2 minutes),
  price moves, a client retrying its keyed request;
- worker crashes between steps (``WorkerKilled`` at a chosen point: after the claim,
  after the send, between moving the position to CLOSING and recording its close, after
  an order's final write, after a cancel went out), the task lost or redelivered later;
  a claim's lease left held and running out;
- recoveries running beside live workers, task redeliveries (the same task twice);
- exchange faults: timeouts and dropped replies before and after processing, 5xx and
  429 after processing, truncated replies, processing delayed past the client timeout,
  listings that answer empty (or fail) for N lookups, partial fills, fills during the
  cancel, orders that stay open;
- the portfolio guard: a run may limit the strategy's open positions, the account's
  entries per minute and its daily loss (a trip to ``REDUCING`` or ``HALTED``, with or
  without closing every position), and the operator moves the platform, the account or
  the strategy to ``REDUCING`` or ``HALTED`` and back (re-arming a trip). Every entry is
  admitted or refused exactly as the harness's own count says (the strictest state and
  its trip, the rate, positions held plus entries on their way), and closes, timeouts
  and a trip's close-all go on in every state.

After every step the promises hold with their allowances (``operations.invariants``,
default grace), no position's exit orders filled more than it held, a client key
always names the same order, and the strategy holds no more positions (with entries on
their way) than its limit. At the end the faults stop, the platform runs until it is
quiet, and every promise must hold with no grace at all, every position be closed, every
order and action finished.

Faults are bounded by what the platform promises to survive: a listing lags fewer times
than ``inDoubtLookups`` in a row (lookup faults at most once per two minutes, at most
twice), processing is delayed less than the first counted lookup (8 s), every fault is
consumed.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import time_machine
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from execution import services
from execution.exchanges.base import Ticker
from execution.exchanges.ccxt_exchange import CcxtExchange, reset_ccxt_clients
from execution.exchanges.paper import PaperExchange, reset_paper_exchanges
from execution.gates import OrderRefused
from execution.models import Action, ActionKind, ActionState, Order, OrderPurpose, OrderStatus
from execution.pipeline import placement
from execution.streams import marks_publish
from guard.models import TradingState
from guard.services import scope_get, scope_portfolio_set, scope_state_set
from lifecycle import close_actions
from lifecycle.models import Position, PositionState
from lifecycle.services import position_request_close
from operations.invariants import GRACE
from operations.recovery import recover
from tests.faults.venues import LOOKUP_FAULTS, OTHER_FAULTS, PLACE_FAULTS, PRICE, SYMBOL, Fault
from tests.integration.harness import Platform
from tradingsite.celery import app as celery_app
from tradingsite.testing.factories import StrategyFactory
from tradingsite.testing.promises import check_promises

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
STRATEGY_CONFIG = {
    "lifecycle": {"warningThresholdMinutes": 1, "maxHoldingTimeMinutes": 2},
    "orderExecution": {"orderTimeoutSeconds": 30, "inDoubtGraceSeconds": 30,
                       "inDoubtLookups": 3, "maxRetries": 3, "retryDelayMs": 1000,
                       "actionLeaseSeconds": 15},
}
BEAT = {"lifecycle.tasks.check_timeouts": 15, "execution.tasks.sweep_actions": 5,
        "execution.tasks.sweep_order_timeouts": 5, "guard.tasks.evaluate": 5}
CHECK_EVERY = timedelta(seconds=15)  # the promises are checked at least this often
LOOKUP_FAULT_COOLDOWN = timedelta(minutes=2)
THEN = st.sampled_from([0, 1, 5])  # seconds the platform runs after an outside event
REDELIVERY_DELAY = 10.0  # a killed worker's unacknowledged task comes back after this
SETTLE_LIMIT = timedelta(minutes=40)
CRASH_POINTS = ("after_claim", "after_send", "before_close_order", "before_settle",
                "after_cancel_sent")
SCOPES = ("global", "account", "strategy")
RATE_WINDOW = timedelta(seconds=60)  # maxOrdersPerMinute counts the entries of the last minute


class WorkerKilled(BaseException):
    """The worker died here (kill -9): nothing after this line ran, nothing was answered."""

    def __init__(self, point: str, redeliver: bool):
        super().__init__(point)
        self.point, self.redeliver = point, redeliver


class Crashes:
    """Where the next worker death happens; the patched functions ask here."""

    def __init__(self) -> None:
        self.armed: dict[str, bool] = {}  # point → redeliver the killed task
        self.happened: list[str] = []

    def die_here(self, point: str) -> None:
        if point in self.armed:
            redeliver = self.armed.pop(point)
            self.happened.append(point)
            raise WorkerKilled(point, redeliver)


CRASHES = Crashes()


def install_crash_points(monkeypatch: Any) -> None:
    """Wrap the functions where a worker can die (once per test; armed per step)."""
    send, submit, settle = (placement._send, close_actions.order_submit,
                           services.order_actions_settle)

    def crashing_send(order: Order, exchange: Any) -> Any:
        CRASHES.die_here("after_claim")
        snapshot = send(order, exchange)
        CRASHES.die_here("after_send")
        return snapshot

    def crashing_submit(**fields: Any) -> Order:
        if fields.get("action") is not None:
            CRASHES.die_here("before_close_order")
        return submit(**fields)

    def crashing_settle(order: Order, **kwargs: Any) -> None:
        CRASHES.die_here("before_settle")
        settle(order, **kwargs)

    monkeypatch.setattr(placement, "_send", crashing_send)
    monkeypatch.setattr(close_actions, "order_submit", crashing_submit)
    monkeypatch.setattr(services, "order_actions_settle", crashing_settle)
    for exchange_class in (PaperExchange, CcxtExchange):
        cancel = exchange_class.cancel_order

        def crashing_cancel(self: Any, order_id: str, symbol: str, _cancel: Any = cancel) -> None:
            _cancel(self, order_id, symbol)
            CRASHES.die_here("after_cancel_sent")

        monkeypatch.setattr(exchange_class, "cancel_order", crashing_cancel)


class HarnessPlatform(Platform):
    """The virtual-time platform whose workers can be killed mid-task."""

    def __init__(self, traveller: Any):
        super().__init__(traveller)
        self.killed: list[tuple[str, str]] = []  # (task, crash point)

    def _run_due(self, now: datetime) -> int:
        ran = 0
        while True:
            self.commit()
            due = sorted(m for m in self._pending if m.eta <= now and self._served(m))
            if not due:
                return ran
            message = due[0]
            self._pending.remove(message)
            message.ran_at = timezone.now()
            try:
                celery_app.tasks[message.task](*message.args, **message.kwargs)
            except WorkerKilled as killed:
                self.killed.append((message.short_name, killed.point))
                if killed.redeliver:  # acknowledged late: the broker hands it out again
                    self.send(message.task, message.args, message.kwargs,
                              countdown=REDELIVERY_DELAY, queue=message.queue)
            ran += 1


PLATFORM: list[HarnessPlatform] = []  # the current run's (Task.apply_async goes there)


@dataclass
class Stats:
    """How far a harness test got: examples started, and when a promise first broke."""

    started: float = 0.0
    examples: int = 0
    first_failure: tuple[int, float] | None = None

    def restart(self) -> None:
        self.started, self.examples, self.first_failure = time.monotonic(), 0, None


STATS = Stats()


def route_tasks_to_the_harness(monkeypatch: Any) -> None:
    from celery.app.task import Task

    def apply_async(task: Task, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        PLATFORM[-1].send(task.name, tuple(args or ()), kwargs,
                          countdown=options.get("countdown"), eta=options.get("eta"),
                          queue=options.get("queue"))

    monkeypatch.setattr(Task, "apply_async", apply_async)


@dataclass
class Log:
    """What the run did, printed with a failure (hypothesis prints the steps too)."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(f"{timezone.now():%H:%M:%S} {line}")


@dataclass(frozen=True)
class Pick:
    """A replayed draw, for step lists kept as tests: the ``index``-th candidate (in id
    order), or the first for which ``where`` holds."""

    index: int = 0
    where: Any = None

    def choose(self, candidates: list[Any]) -> Any:
        if self.where is not None:
            return next(c for c in candidates if self.where(c))
        return candidates[min(self.index, len(candidates) - 1)]


class FaultHarness(RuleBasedStateMachine):
    """One run: an empty platform on ``venue``, random steps, then settle and check."""

    venue: ClassVar[Any]
    runs: ClassVar[itertools.count]

    def __init__(self) -> None:
        super().__init__()
        STATS.examples += 1
        self.example = STATS.examples
        self.log = Log()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._travel = time_machine.travel(START, tick=False)
        self.clock = self._travel.start()
        reset_paper_exchanges()
        reset_ccxt_clients()
        CRASHES.armed.clear()
        self.account = self.venue.open_account()
        self.strategy = StrategyFactory(name="harness", account=self.account,
                                        live_trading=STRATEGY_CONFIG)
        self.caller = get_user_model().objects.create_user(
            f"harness-bot-{next(self.runs)}", is_staff=True)
        self.platform = HarnessPlatform(self.clock)
        PLATFORM.append(self.platform)
        for task, every in BEAT.items():
            self.platform.schedule(task, every)
        self.keys: dict[str, tuple[int, dict[str, Any]]] = {}
        self.last_lookup_fault: datetime | None = None
        self.price = PRICE
        self.writes = 0  # outside events that wrote to the database or the exchange
        # the guard: the run's limits and the entries it admitted
        self.max_open: int | None = None
        self.max_rate: int | None = None
        self.admitted: list[datetime] = []

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _pick(data: Any, candidates: list[Any]) -> Any:
        if isinstance(data, Pick):
            return data.choose(candidates)
        return data.draw(st.sampled_from(candidates))

    def _run_for(self, seconds: float, *, check_every: timedelta = CHECK_EVERY) -> None:
        """Run the platform ``seconds`` on, checking the promises every ``check_every``."""
        until = timezone.now() + timedelta(seconds=seconds)
        while timezone.now() < until:
            self.platform.run(until=min(until, timezone.now() + check_every))
            self._promises_hold_now()

    def _held_positions(self) -> list[Position]:
        return list(Position.objects.filter(state__in=PositionState.active()).order_by("pk"))

    def _broken(self, message: str) -> None:
        """A promise broke: remember the first time (example, seconds into the run), fail."""
        if STATS.first_failure is None:
            STATS.first_failure = (self.example, time.monotonic() - STATS.started)
        raise AssertionError(message)

    def _changed_since_last_check(self) -> bool:
        """Something ran or was asked since the last check (arming a fault changes nothing)."""
        mark = (timezone.now(), len(self.platform.sent), sum(
            1 for m in self.platform.sent if m.ran_at), self.writes)
        changed, self._last_check = mark != getattr(self, "_last_check", None), mark
        return changed

    def _promises_hold_now(self, grace: timedelta = GRACE) -> None:
        if grace == GRACE and not self._changed_since_last_check():
            return
        check = check_promises(grace=grace)
        if check.violations:
            self._broken("\n".join(["promises broken:", *(f"  {v}" for v in check.violations),
                                    "run:", *self.log.lines]))
        # The harness's paper book holds every order of the run: empty is not "restarted".
        unread = [reason for reason in check.unreadable if not (
            reason.endswith("restarted empty with this process") and self.venue.name == "paper")]
        assert unread == [], unread
        self._no_position_closed_twice()

    def _no_position_closed_twice(self) -> None:
        """On the exchange, a position's exit orders never filled more than it held."""
        filled = self.venue.exit_fills_by_client_id()
        exits: dict[int, Decimal] = {}
        for order in Order.objects.filter(position__isnull=False).exclude(
                purpose=OrderPurpose.ENTRY):
            exits[order.position_id] = exits.get(order.position_id, Decimal("0")) + filled.get(
                order.client_order_id, Decimal("0"))
        for position in Position.objects.filter(pk__in=exits):
            if exits[position.pk] > position.initial_quantity:
                self._broken(f"position {position.pk} held {position.initial_quantity}, its "
                             f"exit orders filled {exits[position.pk]} on the exchange\n"
                             + "\n".join(self.log.lines))

    def _open_positions(self) -> int:
        """What ``maxOpenPositions`` counts: positions held plus entries on their way."""
        return (Position.objects.filter(strategy=self.strategy,
                                        state__in=PositionState.active()).count()
                + Order.objects.filter(strategy=self.strategy, purpose=OrderPurpose.ENTRY,
                                       position__isnull=True,
                                       status__in=OrderStatus.active()).count())

    def _label(self, scope: str) -> str:
        return {"global": "global", "account": f"account:{self.account.name}",
                "strategy": f"strategy:{self.strategy.name}"}[scope]

    def _refusals_due(self) -> set[str]:
        """The reason codes an entry must be refused with now (empty: it must pass): the
        strictest state of its scopes (the platform's first) with its trip's code, else
        each counted limit it meets."""
        scopes = [scope_get(self._label(scope)) for scope in SCOPES]
        binding = max(scopes, key=lambda scope: (TradingState.strictness(scope.state),
                                                 -scope.level))
        if binding.state != TradingState.ACTIVE:
            return {binding.trip_code or ("TRADING_HALTED" if binding.state == TradingState.HALTED
                                          else "REDUCING_ONLY")}
        due = set()
        now = timezone.now()
        if self.max_rate is not None and sum(
                1 for at in self.admitted if at > now - RATE_WINDOW) >= self.max_rate:
            due.add("ORDER_RATE")
        if self.max_open is not None and self._open_positions() >= self.max_open:
            due.add("MAX_OPEN_POSITIONS")
        return due

    def _within_limits(self) -> None:
        if self.max_open is not None and (held := self._open_positions()) > self.max_open:
            self._broken(f"the strategy holds {held} positions and entries, maxOpenPositions "
                         f"{self.max_open}\n" + "\n".join(self.log.lines))

    # --- what traders, operators and the risk monitor do -----------------------------------

    @initialize(max_open=st.sampled_from([None, 2, 3]), max_rate=st.sampled_from([None, 3]),
                daily_loss=st.sampled_from([None, 1]),
                on_trip=st.sampled_from([TradingState.REDUCING, TradingState.HALTED]),
                close_all=st.booleans())
    def guard_limits(self, max_open: int | None, max_rate: int | None,
                     daily_loss: int | None = None, on_trip: str = TradingState.HALTED,
                     close_all: bool = False) -> None:
        """The strategy's ``maxOpenPositions`` (its own override); the account's
        ``maxOrdersPerMinute`` and ``dailyLossLimitAmount`` in USDT (a few fees, or a
        small move against a position, trip it) with its ``onTrip`` and ``closeAllOnTrip``
        (the account scope's overrides); or no limits."""
        if max_open is not None:
            self.strategy.refresh_from_db()
            self.strategy.live_trading = {**self.strategy.live_trading,
                                          "portfolio": {"maxOpenPositions": max_open}}
            self.strategy.save(update_fields=["live_trading"])
        overrides: dict[str, Any] = {}
        if max_rate is not None:
            overrides["maxOrdersPerMinute"] = max_rate
        if daily_loss is not None:
            overrides.update(dailyLossLimitAmount=daily_loss, onTrip=on_trip,
                             closeAllOnTrip=close_all)
        if overrides:
            scope_portfolio_set(scope=scope_get(self._label("account")), overrides=overrides,
                                actor="operator", reason="harness limits")
        self.max_open, self.max_rate = max_open, max_rate
        trips = (f", dailyLossLimitAmount {daily_loss} → {on_trip}"
                 f"{' closing all' if close_all else ''}" if daily_loss is not None else "")
        self.log.add(f"limits: maxOpenPositions {max_open}, maxOrdersPerMinute {max_rate}"
                     + trips)

    @initialize(side=st.sampled_from(["buy", "sell"]), lots=st.integers(1, 10),
                max_retries=st.sampled_from([3, 1, 0]))
    def first_entry(self, side: str, lots: int, max_retries: int = 3) -> None:
        """Every run trades: it starts with a market entry. Fewer retries of a send whose
        outcome is unknown bring the lookups in doubt sooner (``maxRetries``)."""
        if max_retries != STRATEGY_CONFIG["orderExecution"]["maxRetries"]:
            self.strategy.refresh_from_db()
            self.strategy.live_trading = {**self.strategy.live_trading, "orderExecution": {
                **STRATEGY_CONFIG["orderExecution"], "maxRetries": max_retries}}
            self.strategy.save(update_fields=["live_trading"])
            self.log.add(f"maxRetries {max_retries}")
        self.enter(side, lots, limit=False, keyed=True)

    @rule(side=st.sampled_from(["buy", "sell"]), lots=st.integers(1, 10),
          limit=st.booleans(), keyed=st.booleans(), then=THEN)
    def enter(self, side: str, lots: int, limit: bool, keyed: bool, then: int = 0) -> None:
        """A bot places an entry through the API's service (limit: resting 0.5 % away)."""
        fields: dict[str, Any] = {"symbol": SYMBOL, "side": side,
                                  "quantity": Decimal("0.001") * lots,
                                  "order_type": "limit" if limit else "market"}
        if limit:
            away = Decimal("0.995") if side == "buy" else Decimal("1.005")
            fields["price"] = (self.price * away).quantize(Decimal("0.1"))
        key = f"entry-{len(self.keys)}" if keyed else None
        due = self._refusals_due()
        try:
            order, created = services.order_request(caller=self.caller, strategy=self.strategy,
                                                    idempotency_key=key, **fields)
        except OrderRefused as refused:
            if refused.reason_code not in due:
                self._broken(f"entry refused {refused.reason_code} ({refused}); due: "
                             f"{sorted(due) or 'none'}\n" + "\n".join(self.log.lines))
            self.writes += 1  # the refusal is recorded (the key stays free)
            self.log.add(f"enter {side} {fields['quantity']} refused {refused.reason_code}")
            self._run_for(then)
            return
        if due:
            self._broken(f"entry {order.client_order_id} admitted; due: {sorted(due)}\n"
                         + "\n".join(self.log.lines))
        assert created
        self.admitted.append(timezone.now())
        if key:
            self.keys[key] = (order.pk, fields)
        self.writes += 1
        self.log.add(f"enter {side} {fields['quantity']} {fields['order_type']} "
                     f"→ {order.client_order_id}")
        self._run_for(then)

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def client_retries(self, data: st.DataObject) -> None:
        """The bot lost the 202 and sends the same keyed request again: the same order."""
        key = self._pick(data, sorted(self.keys))
        order_id, fields = self.keys[key]
        order, created = services.order_request(caller=self.caller, strategy=self.strategy,
                                                idempotency_key=key, **fields)
        assert (order.pk, created) == (order_id, False)
        self.writes += 1
        self.log.add(f"client retries {key}")

    def _close(self, data: st.DataObject, *, reason: str, actor: str, kind: str) -> None:
        held = self._held_positions()
        if not held:
            return
        position = self._pick(data, held)
        try:
            action, created = position_request_close(position=position, reason=reason,
                                                     actor=actor, kind=kind)
        except Exception as exc:  # a position closed meanwhile
            from tradingsite.errors import InvalidStateTransition

            assert isinstance(exc, InvalidStateTransition), exc
            return
        self.writes += 1
        self.log.add(f"{actor} closes position {position.pk} ({kind}) → action {action.pk}"
                     f"{'' if created else ' (already queued)'}")

    @rule(data=st.data(), emergency=st.booleans(), then=THEN)
    def operator_closes(self, data: st.DataObject, emergency: bool, then: int = 0) -> None:
        self._close(data, reason="manual", actor="operator",
                    kind=ActionKind.EMERGENCY_CLOSE if emergency else ActionKind.CLOSE)
        self._run_for(then)

    @rule(data=st.data(), then=THEN)
    def risk_closes(self, data: st.DataObject, then: int = 0) -> None:
        self._close(data, reason="risk", actor="risk", kind=ActionKind.EMERGENCY_CLOSE)
        self._run_for(then)

    @rule(percent=st.sampled_from([-1, 1]), then=THEN)
    def price_moves(self, percent: int, then: int = 0) -> None:
        """The market moves; the account's stream owner publishes the mark (the held
        positions' unrealised PnL, which the guard's daily loss counts)."""
        self.price = (self.price * (1 + Decimal(percent) / 100)).quantize(Decimal("0.1"))
        self.venue.set_price(self.price)
        marks_publish(self.account.pk, [Ticker(SYMBOL, None, None, self.price)], timezone.now())
        self.writes += 1
        self.log.add(f"price {self.price}")
        self._run_for(then)

    @rule(scope=st.sampled_from(SCOPES), state=st.sampled_from(TradingState.values), then=THEN)
    def operator_sets_state(self, scope: str, state: str, then: int = 0) -> None:
        """The operator halts, reduces or re-activates the platform, the account or the
        strategy (ACTIVE or REDUCING re-arms a trip); closes and holding-time timeouts must
        go on whatever the state."""
        row = scope_get(self._label(scope))
        tripped = row.trip_code
        scope_state_set(scope=row, state=state, reason="harness operator", actor="operator")
        self.writes += 1
        self.log.add(f"operator sets {row.label} {state}"
                     + (f" ({tripped} trip)" if tripped else ""))
        self._run_for(then)

    # --- time ---------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 2, 5, 10]))
    def a_moment_passes(self, seconds: int) -> None:
        self._run_for(seconds)

    @rule(seconds=st.sampled_from([30, 60, 150]))
    def time_passes(self, seconds: int) -> None:
        """Long enough for order timeouts (30 s) and holding-time timeouts (2 min)."""
        self._run_for(seconds)

    # --- workers --------------------------------------------------------------------------------

    @rule(point=st.sampled_from(CRASH_POINTS), redeliver=st.booleans(), then=THEN)
    def a_worker_will_die(self, point: str, redeliver: bool, then: int = 0) -> None:
        CRASHES.armed[point] = redeliver
        self.log.add(f"a worker will die at {point} ({'redelivered' if redeliver else 'lost'})")
        self._run_for(then)

    @precondition(lambda self: any(m.short_name in ("drive_order", "process_action")
                                   for m in self.platform.sent if m.ran_at))
    @rule(data=st.data(), then=THEN)
    def a_task_is_delivered_twice(self, data: st.DataObject, then: int = 0) -> None:
        ran = [m for m in self.platform.sent if m.ran_at and m.short_name in (
            "drive_order", "process_action", "expire_overdue_orders")]
        # a replayed pick names its message: look through every task that ran
        message = self._pick(data, ran if isinstance(data, Pick) and data.where else ran[-10:])
        self.platform.send(message.task, message.args, message.kwargs, queue=message.queue)
        self.log.add(f"redelivered {message.short_name}{message.args}")
        self._run_for(then)

    @rule(then=THEN)
    def recovery_runs_beside_the_workers(self, then: int = 0) -> None:
        """A worker starts (or the operator reconciles) while others are mid-way."""
        from execution.pipeline import Next
        from execution.tasks import schedule_next

        recover(trigger="harness", exclusive=False, out=lambda line: None,
                track=lambda order: schedule_next(Next(order, 0.0, "tracked by recovery")))
        self.writes += 1
        self.log.add("recovery ran beside the workers")
        self._run_for(then)

    # --- the exchange ----------------------------------------------------------------------------

    @rule(name=st.one_of(st.sampled_from(PLACE_FAULTS), st.sampled_from(LOOKUP_FAULTS),
                         st.sampled_from(OTHER_FAULTS)), times=st.integers(1, 2),
          ratio=st.sampled_from(["0.3", "0.5", "1"]), seconds=st.integers(1, 8), then=THEN)
    def the_exchange_fails(self, name: str, times: int, ratio: str, seconds: int,
                           then: int = 0) -> None:
        now = timezone.now()
        if name in LOOKUP_FAULTS:
            if self.last_lookup_fault and now < self.last_lookup_fault + LOOKUP_FAULT_COOLDOWN:
                return  # a lag longer than inDoubtLookups lookups is outside the promise
            self.last_lookup_fault = now
        faults = [Fault(name, times, ratio, seconds)]
        if name == "lost_then_lagging":  # the answer is lost, then the listing lags
            faults = [Fault("place_timeout_after"), Fault("lookup_empty", times)]
        for fault in faults:
            self.venue.inject(fault)
            self.log.add(f"exchange fault {fault}")
        self._run_for(then)

    # --- after every step -------------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        self._promises_hold_now()
        self._within_limits()
        for key, (order_id, _) in self.keys.items():
            assert Order.objects.filter(pk=order_id).exists(), key

    def teardown(self) -> None:
        try:
            if hasattr(self, "platform"):
                self._settle()
        finally:
            if hasattr(self, "_travel"):
                self._travel.stop()
            if hasattr(self, "_atomic"):
                transaction.set_rollback(True)
                self._atomic.__exit__(None, None, None)
            PLATFORM.clear()
            CRASHES.armed.clear()
            reset_paper_exchanges()
            reset_ccxt_clients()

    def _settle(self) -> None:
        """No more faults: everything must end, and then every promise hold exactly."""
        CRASHES.armed.clear()
        self.venue.clear_faults()
        self.log.add("faults stop; settling")
        deadline = timezone.now() + SETTLE_LIMIT
        while timezone.now() < deadline:
            self._run_for(60, check_every=timedelta(seconds=60))
            busy = (Order.objects.filter(status__in=OrderStatus.active()).exists()
                    or Action.objects.filter(state__in=ActionState.open()).exists()
                    or Position.objects.filter(state__in=PositionState.active()).exists())
            if not busy:
                break
        left = {
            "orders": list(Order.objects.filter(status__in=OrderStatus.active()).values_list(
                "client_order_id", "status")),
            "actions": list(Action.objects.filter(state__in=ActionState.open()).values_list(
                "pk", "kind", "state")),
            "positions": list(Position.objects.filter(state__in=PositionState.active())
                              .values_list("pk", "state", "attention")),
        }
        if left != {"orders": [], "actions": [], "positions": []}:
            self._broken(f"not settled after {SETTLE_LIMIT}: {left}\n" + "\n".join(
                self.log.lines))
        self._promises_hold_now(grace=timedelta(0))
        if os.environ.get("FAULT_DEBUG"):
            print(f"run {self.example}: {len(self.log.lines)} steps, {Order.objects.count()} "
                  f"orders, {Position.objects.count()} positions, workers killed "
                  f"{self.platform.killed}, {timezone.now() - START} virtual")
