"""The platform's audit log: who, when, what, before and after; rows are never changed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from tradingsite.audit import audit_record, changed_fields
from tradingsite.models import AppendOnlyError, AuditEvent

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 4, 12, 30, tzinfo=UTC)


@pytest.fixture
def event(strategy):
    with time_machine.travel(T0, tick=False):
        return audit_record(actor="operator", action="strategy.update", target=strategy,
                            before={"enabled": True, "limit": Decimal("1.50")},
                            after={"enabled": False, "limit": Decimal("2")},
                            reason="paused for the exchange maintenance")


def test_a_record_says_who_when_what_before_and_after(event, strategy):
    stored = AuditEvent.objects.get()
    assert (stored.actor, stored.created_at, stored.action, stored.target_type, stored.target_id,
            stored.target_repr, stored.before, stored.after, stored.reason) == (
        "operator", T0, "strategy.update", "lifecycle.strategy", str(strategy.pk), strategy.name,
        {"enabled": True, "limit": "1.50"}, {"enabled": False, "limit": "2"},
        "paused for the exchange maintenance")


def test_changed_fields_keeps_only_what_changed():
    assert changed_fields({"a": 1, "b": "x", "c": None}, {"a": 1, "b": "y", "c": 5},
                          ["a", "b", "c"]) == ({"b": "x", "c": None}, {"b": "y", "c": 5})


def test_a_record_rolls_back_with_its_change(strategy):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(actor="operator", action="strategy.update", target=strategy)
        raise RuntimeError("the change failed")
    assert not AuditEvent.objects.exists()


def test_the_model_refuses_to_update_or_delete(event):
    event.reason = "edited"
    with pytest.raises(AppendOnlyError, match="never updated"):
        event.save()
    with pytest.raises(AppendOnlyError, match="never deleted"):
        event.delete()
    with pytest.raises(AppendOnlyError, match="never updated"):
        AuditEvent.objects.filter(pk=event.pk).update(reason="edited")
    with pytest.raises(AppendOnlyError, match="never deleted"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().reason == "paused for the exchange maintenance"


def test_the_database_refuses_an_update_from_any_client(event):
    table = AuditEvent._meta.db_table
    with pytest.raises(DatabaseError, match="never updated"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET actor = 'someone else'")
    assert AuditEvent.objects.get().actor == "operator"


@pytest.mark.postgres
def test_postgresql_refuses_a_delete_from_any_client(event):
    table = AuditEvent._meta.db_table
    with pytest.raises(DatabaseError, match="never updated or deleted"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")
    assert AuditEvent.objects.count() == 1


def test_the_admin_shows_the_log_read_only(admin_client, event):
    changelist = admin_client.get(reverse("admin:tradingsite_auditevent_changelist"))
    assert changelist.status_code == 200
    assert "enabled: True → False" in changelist.content.decode()
    change = admin_client.get(reverse("admin:tradingsite_auditevent_change", args=[event.pk]))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert admin_client.post(reverse("admin:tradingsite_auditevent_change", args=[event.pk]),
                             {"actor": "x"}).status_code == 403
    assert admin_client.post(reverse("admin:tradingsite_auditevent_delete", args=[event.pk]),
                             {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:tradingsite_auditevent_add")).status_code == 403
    assert AuditEvent.objects.get().actor == "operator"
