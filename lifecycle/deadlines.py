"""Deadlines on time: a scheduler that sleeps until the next warning or timeout is due.

The beat's 15 s timeout pass lets a position run up to 15 s past its limit. The
``DeadlineScheduler`` (a platform service, like the account streams) asks the
database for the earliest deadline of any held position — one query: the minimum
of ``opened_at`` + each strategy's warning threshold over OPEN positions and
+ its max holding time over WARNING ones — sleeps until then, and runs the same
set-based timeout pass (``services.timeout_pass_run``) at that instant. It is woken
early when positions change: a position opened, moved back from CLOSING, or a
strategy's limits edited (in this process directly; across processes through Redis
pub/sub on ``lifecycle.deadlines`` when ``REDIS_URL`` is set). It never sleeps longer
than ``MAX_SLEEP_SECONDS``, and the beat's periodic pass stays as the backstop.

Several processes may run one each: the pass is safe concurrently (rows are locked
with SKIP LOCKED, closes are keyed).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import Min
from django.utils import timezone

from lifecycle.models import Position, PositionState
from lifecycle.selectors import strategy_limits, with_deadlines
from lifecycle.services import TimeoutPassResult, timeout_pass_run

log = logging.getLogger(__name__)

CHANNEL = "lifecycle.deadlines"
MAX_SLEEP_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0

_local_wakers: set[threading.Event] = set()
_local_lock = threading.Lock()


def next_deadline() -> datetime | None:
    """The earliest warning or timeout deadline of any held position (one query)."""
    limits = strategy_limits()
    earliest = [with_deadlines(Position.objects.filter(state=state), limits)
                .aggregate(at=Min(column))["at"]
                for state, column in ((PositionState.OPEN, "warning_due_at"),
                                      (PositionState.WARNING, "timeout_due_at"))]
    found = [at for at in earliest if at is not None]
    return min(found) if found else None


def deadlines_changed(**kwargs: Any) -> None:
    """Wake every scheduler: a position or a limit changed (signal receiver, after commit)."""
    from django.db import transaction

    transaction.on_commit(_wake_all)


_publisher: Any = None


def _wake_all() -> None:
    global _publisher
    with _local_lock:
        for event in _local_wakers:
            event.set()
    if settings.REDIS_URL:
        try:
            if _publisher is None:  # one client (and its pool) per process
                import redis

                _publisher = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
            _publisher.publish(CHANNEL, b"changed")
        except Exception:  # the periodic pass is the backstop
            log.warning("deadline wake-up not published", exc_info=True)


class DeadlineScheduler:
    """A platform service: the timeout pass at each deadline (see the module doc)."""

    name = "deadlines"

    def __init__(self, *, max_sleep: float = MAX_SLEEP_SECONDS) -> None:
        self.max_sleep = max_sleep
        self.wake = threading.Event()
        self.passes = 0
        self.last: TimeoutPassResult | None = None
        self.lateness: list[float] = []  # seconds past the deadline of each pass that moved
        self.progress = threading.Condition()  # notified after every step: tests wait on it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deadline-scheduler",
                                        daemon=True)
        self._listener: threading.Thread | None = None
        self._redis: Any = None
        self._pubsub: Any = None

    def start(self) -> str:
        with _local_lock:
            _local_wakers.add(self.wake)
        how = "in-process"
        if settings.REDIS_URL:
            self._listen()
            how = f"in-process and Redis pub/sub {CHANNEL}"
        self._thread.start()
        return f"deadline scheduler (timeouts at their due time; woken {how})"

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        self._stop.set()
        self.wake.set()
        with _local_lock:
            _local_wakers.discard(self.wake)
        if self._pubsub is not None:
            try:
                self._pubsub.close()
                self._redis.close()
            except Exception:
                pass
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Block until ``predicate()`` holds after one of the scheduler's steps (tests)."""
        with self.progress:
            return self.progress.wait_for(predicate, timeout)

    def _listen(self) -> None:
        import redis

        # Kept on the scheduler: a client that is garbage-collected closes its connections.
        self._redis = redis.Redis.from_url(settings.REDIS_URL)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(CHANNEL)

        def listen() -> None:
            try:
                for _ in self._pubsub.listen():
                    self.wake.set()
            except Exception:  # closed on stop, or Redis went away: the backstop remains
                if not self._stop.is_set():
                    log.warning("deadline wake-ups from Redis stopped", exc_info=True)

        self._listener = threading.Thread(target=listen, name="deadline-listener", daemon=True)
        self._listener.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                close_old_connections()
                try:
                    sleep = self.step()
                except Exception:
                    log.exception("deadline scheduler: step failed")
                    sleep = 1.0
                with self.progress:
                    self.progress.notify_all()
                self.wake.wait(sleep)
                self.wake.clear()
        finally:
            connections.close_all()

    def step(self) -> float:
        """Run the pass if a deadline is due; how long to sleep until the next one."""
        due = next_deadline()
        now = timezone.now()
        if due is not None and due <= now:
            self.last = timeout_pass_run(now)
            self.passes += 1
            if self.last.warned or self.last.timed_out:
                self.lateness.append((now - due).total_seconds())
            due = next_deadline()
            now = timezone.now()
        if due is None:
            return self.max_sleep
        return min(max((due - now).total_seconds(), 0.0), self.max_sleep)
