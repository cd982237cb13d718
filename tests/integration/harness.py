"""The platform's processes in the test's thread, on a frozen clock.

Celery in virtual time: ``apply_async``/``delay`` put a message on an in-memory
broker with its ETA (``now + countdown``) and queue; the worker runs the due
messages in ETA order by calling the real task here; beat sends the periodic tasks
at their intervals; and the clock jumps from one event to the next (time-machine,
``tick=False``). What the test or a task commits is dispatched the way production
does it: the ``transaction.on_commit`` callbacks run at each step boundary, which is
where a worker's transaction would have committed.

Nothing is slept: four simulated hours with a timeout pass every minute take about
a second, and every countdown, queue and ordering is exact and assertable.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from tradingsite.celery import app as celery_app

DEFAULT_QUEUE = "celery"


@dataclass(order=True)
class Message:
    """One task message: when it is due, and what it asks for."""

    eta: datetime
    seq: int
    task: str = field(compare=False)
    args: tuple = field(compare=False, default=())
    kwargs: dict = field(compare=False, default_factory=dict)
    queue: str = field(compare=False, default=DEFAULT_QUEUE)
    countdown: float | None = field(compare=False, default=None)
    sent_at: datetime | None = field(compare=False, default=None)
    ran_at: datetime | None = field(compare=False, default=None)

    @property
    def short_name(self) -> str:
        return self.task.rsplit(".", 1)[-1]


class Platform:
    """Broker, workers and beat of the platform, driven step by step by a test.

    ``queues``: the queues the workers serve (``None``: every queue). A message on a
    queue nobody serves stays on the broker, as it would in production.
    """

    def __init__(self, traveller: Any):
        self.traveller = traveller
        self.queues: set[str] | None = None
        self.sent: list[Message] = []
        self._pending: list[Message] = []
        self._seq = itertools.count()
        self._beat: dict[str, tuple[float, datetime]] = {}
        self._on_commit_mark = len(connections[DEFAULT_DB_ALIAS].run_on_commit)

    # --- the broker ----------------------------------------------------------------

    def send(self, task: str, args: tuple = (), kwargs: dict | None = None, *,
             countdown: float | None = None, eta: datetime | None = None,
             queue: str | None = None) -> Message:
        now = timezone.now()
        due = eta or now + timedelta(seconds=countdown or 0)
        message = Message(due, next(self._seq), task, tuple(args or ()), dict(kwargs or {}),
                          queue or DEFAULT_QUEUE, countdown, now)
        self.sent.append(message)
        self._pending.append(message)
        return message

    @property
    def pending(self) -> list[Message]:
        return sorted(self._pending)

    def messages(self, task: str) -> list[Message]:
        """Messages sent for ``task`` (its full dotted name or its last part)."""
        return [m for m in self.sent if task in (m.task, m.short_name)]

    def ran(self, task: str) -> list[Message]:
        return [m for m in self.messages(task) if m.ran_at is not None]

    def lose(self, task: str) -> list[Message]:
        """Take the pending messages of ``task`` off the broker: a crash lost them."""
        lost = [m for m in self._pending if task in (m.task, m.short_name)]
        self._pending = [m for m in self._pending if m not in lost]
        return lost

    # --- beat ------------------------------------------------------------------------

    def schedule(self, task: str, every: float) -> None:
        """Send ``task`` every ``every`` seconds, the first time one interval from now."""
        self._beat[task] = (every, timezone.now() + timedelta(seconds=every))

    # --- committing -------------------------------------------------------------------

    def commit(self) -> None:
        """Run the on-commit callbacks registered since the last step: the transaction ended.

        Inside a test transaction Django keeps them until the outer rollback; a
        ``transaction=True`` test runs them at once and there is nothing left here.
        """
        connection = connections[DEFAULT_DB_ALIAS]
        while self._on_commit_mark < len(connection.run_on_commit):
            _, callback, _robust = connection.run_on_commit[self._on_commit_mark]
            self._on_commit_mark += 1
            callback()

    # --- the worker -------------------------------------------------------------------

    def _served(self, message: Message) -> bool:
        return self.queues is None or message.queue in self.queues

    def _next_event(self, *, with_beat: bool) -> datetime | None:
        times = [m.eta for m in self._pending if self._served(m)]
        if with_beat:
            times += [due for _, due in self._beat.values()]
        return min(times) if times else None

    def _fire_beat(self, now: datetime) -> None:
        """Send what is due; tasks due at the same instant go out in name order."""
        for task, (every, due) in sorted(self._beat.items(), key=lambda item: (item[1][1],
                                                                               item[0])):
            if due <= now:
                self.send(task)
                self._beat[task] = (every, due + timedelta(seconds=every))

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
            celery_app.tasks[message.task](*message.args, **message.kwargs)
            ran += 1

    def run(self, *, until: datetime | None = None, max_events: int = 50_000) -> int:
        """Advance the clock event by event and run what falls due; returns tasks run.

        With ``until`` the clock ends exactly there, beat firing on the way; without
        it the clock moves until no served message is left (beat is not waited for).
        """
        ran = self._run_due(timezone.now())
        for _ in range(max_events):
            self.commit()
            event = self._next_event(with_beat=until is not None)
            if event is None or (until is not None and event > until):
                break
            if event > timezone.now():
                self.traveller.move_to(event)
            self._fire_beat(timezone.now())
            ran += self._run_due(timezone.now())
        else:
            raise RuntimeError(f"still busy after {max_events} events")
        if until is not None and until > timezone.now():
            self.traveller.move_to(until)
            self._fire_beat(until)
            ran += self._run_due(until)
        return ran
