"""Periodic tasks are in django-celery-beat's tables after migrate, and operator edits stick."""

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tradingsite.celery import app
from tradingsite.schedule import all_periodic_specs, ensure_periodic_tasks

pytestmark = pytest.mark.django_db


def _beat_rows() -> dict[str, tuple[str, int]]:
    rows = PeriodicTask.objects.exclude(name__startswith="celery.").select_related("interval")
    return {row.name: (row.task, row.interval.every) for row in rows
            if row.interval.period == IntervalSchedule.SECONDS}


def test_every_periodic_task_is_registered_after_migrate():
    specs = all_periodic_specs()
    assert {spec.task.split(".")[0] for spec in specs} >= {"lifecycle", "risk", "execution",
                                                           "analytics"}
    assert "lifecycle.tasks.check_timeouts" in {spec.task for spec in specs}
    assert _beat_rows() == {spec.name: (spec.task, int(spec.every_seconds)) for spec in specs}
    assert PeriodicTask.objects.filter(name__in=[s.name for s in specs], enabled=True).count() \
        == len(specs)


def test_every_scheduled_task_exists_in_the_celery_app():
    app.loader.import_default_modules()
    missing = [row.task for row in PeriodicTask.objects.all() if row.task not in app.tasks]
    assert missing == []


def test_an_operator_edit_is_not_overwritten_by_the_next_migrate():
    row = PeriodicTask.objects.get(task="lifecycle.tasks.check_timeouts")
    row.interval, _ = IntervalSchedule.objects.get_or_create(every=45,
                                                             period=IntervalSchedule.SECONDS)
    row.enabled = False
    row.save()
    assert ensure_periodic_tasks() == 0
    row.refresh_from_db()
    assert (row.interval.every, row.enabled) == (45, False)


def test_a_deleted_task_comes_back_on_the_next_migrate():
    spec = all_periodic_specs()[0]
    PeriodicTask.objects.filter(name=spec.name).delete()
    assert ensure_periodic_tasks() == 1
    assert _beat_rows()[spec.name] == (spec.task, int(spec.every_seconds))


def test_only_beat_s_own_post_migrate_signal_registers_tasks():
    spec = all_periodic_specs()[0]
    PeriodicTask.objects.filter(name=spec.name).delete()

    class OtherApp:
        label = "lifecycle"

    assert ensure_periodic_tasks(sender=OtherApp()) == 0
    assert not PeriodicTask.objects.filter(name=spec.name).exists()
