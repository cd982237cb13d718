"""Fixtures of the hostile-input suite: a small world to aim at, a client, row counts.

Requests go through the whole WSGI stack (middleware included) with a staff token,
as an attacker with stolen staff credentials would send them: the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client

from tradingsite.testing.factories import (
    HealthSnapshotFactory,
    OrderFactory,
    PositionFactory,
    RiskAlertFactory,
    TradeFactory,
)
from tradingsite.tokens import api_token_issue

APPS = ("tradingsite", "execution", "lifecycle", "risk", "analytics", "auth", "authtoken",
        "django_celery_beat")


@dataclass(frozen=True)
class World:
    """The ids and names a hostile request refers to."""

    strategy: str
    position: int
    order: int
    alert: int

    def fill(self, text: str) -> str:
        return (text.replace("{strategy}", self.strategy).replace("{position}", str(self.position))
                .replace("{order}", str(self.order)).replace("{alert}", str(self.alert)))


@pytest.fixture
def world(db, strategy) -> World:
    position = PositionFactory(strategy=strategy)
    HealthSnapshotFactory(position=position)
    TradeFactory(strategy=strategy)
    order = OrderFactory(account=strategy.account, position=position)
    alert = RiskAlertFactory(position=position)
    return World(strategy=strategy.name, position=position.pk, order=order.pk, alert=alert.pk)


@pytest.fixture
def api(staff_user) -> Client:
    """The live WSGI stack with a staff token; a server error raises here, not a 500."""
    token = api_token_issue(user=staff_user, actor="test")
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def row_counts() -> dict[str, int]:
    """Rows per table of the platform's models, in one query."""
    tables = sorted(model._meta.db_table for model in apps.get_models()
                    if model._meta.app_label in APPS and model._meta.managed
                    and not model._meta.proxy)
    quote = connection.ops.quote_name
    sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for t in tables)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(zip(tables, cursor.fetchone(), strict=True))


def assert_json_4xx(response: Any, *statuses: int) -> dict[str, Any]:
    """A 4xx (one of ``statuses`` when given) with a JSON object body; returns the body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body, dict) and body, body
    return body
