"""The Celery app: broker from REDIS_URL (or in-memory), beat from the database."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_prerun
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")

app = Celery("tradingsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _connections_checked(**_: object) -> None:
    """Connections outlive tasks (``CELERY_DB_REUSE_MAX``): before each task drop one past
    ``CONN_MAX_AGE`` or broken, and re-arm Django's health check (one ``SELECT 1`` on first
    use), so a restarted PostgreSQL costs a reconnect, not a failed task."""
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
