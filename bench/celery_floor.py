"""The floor under the production path: a Celery task that does nothing but say when it ran.

A bare Celery app (no Django) on the same Redis broker, served by one prefork worker
started the way the bench starts the platform's: the time from ``apply_async`` to the
task body is what any Celery hand-over costs on this machine, before the platform
does anything. ``bench_production`` reports it beside the path it measures.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_PRODUCTION_REDIS_URL", "redis://127.0.0.1:6379/9")

# Not the current app: the bench process sends the platform's own tasks too (a service-path
# close dispatches ``process_action``), and those must keep going through the platform's app.
app = Celery("celery_floor", broker=BROKER, set_as_current=False)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_serializer="json",
                task_default_queue="celery-floor")
_store = redis.Redis.from_url(BROKER)


@app.task
def note_when_run(key: str) -> None:
    """Write the wall-clock moment the task body started under ``key``."""
    _store.set(key, repr(time.time()), ex=60)
