"""The position admin: timeout column and the confirmed "Emergency close" action."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from execution.models import Action
from lifecycle.models import PositionEvent
from lifecycle.tests.conftest import T0
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/lifecycle/position/"


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


def _action(client, positions, **extra):
    return client.post(CHANGELIST, {"action": "emergency_close",
                                    ACTION_CHECKBOX_NAME: [p.pk for p in positions], **extra},
                       follow=True)


def test_the_changelist_shows_the_countdown_to_timeout(operator, strategy):
    PositionFactory(strategy=strategy)
    response = operator.get(CHANGELIST)
    assert response.status_code == 200
    assert "Timeout in" in response.content.decode()
    assert "240 min" in response.content.decode()


def test_emergency_close_asks_for_confirmation_first(operator, strategy):
    positions = PositionFactory.create_batch(2, strategy=strategy)
    response = _action(operator, positions)
    page = response.content.decode()
    assert response.templates[0].name == "admin/lifecycle/position/emergency_close.html"
    assert "Yes, close 2 positions now" in page
    assert all(p.symbol in page for p in positions)
    assert not Action.objects.exists()


def test_confirmed_emergency_close_queues_one_close_per_position(operator, strategy, staff_user):
    open_one = PositionFactory(strategy=strategy)
    already = PositionFactory(strategy=strategy)
    closed = PositionFactory(strategy=strategy, state="CLOSED", closed_at=T0, opened_at=T0)
    first_close = _action(operator, [already], confirm="yes")
    assert first_close.status_code == 200
    response = _action(operator, [open_one, already, closed], confirm="yes", note="flash crash")
    messages = sorted(str(m) for m in response.context["messages"])
    new_action = Action.objects.get(position=open_one)
    old_action = Action.objects.get(position=already)
    assert messages == sorted([
        f"Position #{open_one.pk} (BTC/USDT:USDT): emergency close queued "
        f"(action #{new_action.pk}).",
        f"Position #{already.pk} (BTC/USDT:USDT): a close is already queued "
        f"(action #{old_action.pk}, pending).",
        f"Position #{closed.pk} (BTC/USDT:USDT) is already closed: nothing to close.",
    ])
    assert (new_action.reason, new_action.requested_by) == ("manual", staff_user.username)
    assert PositionEvent.objects.get(position=open_one).reason == (
        "manual: close requested — flash crash")
    assert not Action.objects.filter(position=closed).exists()


def test_staff_without_change_permission_cannot_close(client, django_user_model, strategy):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("auditor", password="x-pass-123",
                                                   is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_position"))
    client.force_login(viewer)
    position = PositionFactory(strategy=strategy)
    response = _action(client, [position], confirm="yes")
    assert response.status_code == 200
    assert not Action.objects.exists()
