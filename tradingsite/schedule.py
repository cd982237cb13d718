"""Periodic tasks: each installed app lists its own in ``tasks.PERIODIC_TASKS``.

They are written to django-celery-beat's tables after ``migrate`` (so the operator
sees and edits them in the admin); an existing row is never overwritten. The apps are
found among ``INSTALLED_APPS``, so an app above this one adds its tasks without being
named here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def apps_with_tasks() -> list[str]:
    """The installed apps of this project (not those installed from packages)."""
    from django.apps import apps
    from django.conf import settings

    root = Path(settings.BASE_DIR)
    return [config.name for config in apps.get_app_configs()
            if Path(config.path).is_relative_to(root)
            and "site-packages" not in Path(config.path).parts]


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    task: str
    every_seconds: float
    description: str = ""


def all_periodic_specs() -> list[PeriodicSpec]:
    specs: list[PeriodicSpec] = []
    for app in apps_with_tasks():
        try:
            module = importlib.import_module(f"{app}.tasks")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app}.tasks":
                raise
            continue
        specs.extend(getattr(module, "PERIODIC_TASKS", []))
    return specs


def ensure_periodic_tasks(sender: Any = None, using: str = "default", **kwargs: Any) -> int:
    """Create missing beat entries; returns how many were created.

    Connected to ``post_migrate``; acts once per migrate, when beat's own app reports.
    """
    if sender is not None and getattr(sender, "label", "") != "django_celery_beat":
        return 0
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = 0
    for spec in all_periodic_specs():
        if PeriodicTask.objects.using(using).filter(name=spec.name).exists():
            continue
        micro = spec.every_seconds < 1
        every = int(spec.every_seconds * 1_000_000) if micro else int(spec.every_seconds)
        period = IntervalSchedule.MICROSECONDS if micro else IntervalSchedule.SECONDS
        interval, _ = IntervalSchedule.objects.using(using).get_or_create(every=every,
                                                                          period=period)
        PeriodicTask.objects.using(using).create(name=spec.name, task=spec.task,
                                                 interval=interval, description=spec.description)
        created += 1
    return created
