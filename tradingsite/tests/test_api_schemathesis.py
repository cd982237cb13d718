"""Property-based API robustness: schemathesis, every check, every operation, two roles.

The schema is the one /api/schema/ serves (same generator, built at collection because
schemathesis' lazy fixture loader does not support this pytest). Calls go in-process
to the live WSGI application, with a staff token and with a viewer token, so generated
writes stay inside the test's transaction; this runs in both passes (SQLite and
PostgreSQL). Every built-in check runs (``schemathesis run --checks all``), including
``positive_data_acceptance`` (valid input per the schema is accepted) and
``negative_data_rejection`` (input the schema forbids is refused): the schema states
exactly what ``tradingsite.api_input`` enforces. Bounded and derandomized: a fixed
budget per operation, the same cases on every run.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

from tradingsite.testing.factories import HealthSnapshotFactory, OrderFactory, PositionFactory
from tradingsite.tokens import api_token_issue
from tradingsite.wsgi import application

MAX_EXAMPLES = 5
# Text never contains NUL: Django refuses it in every form and filter field (400).
GENERATION = {"allow-x00": False}
OPENAPI = SchemaGenerator().get_schema(request=None, public=True)


def _schema(**phases: object) -> schemathesis.schemas.BaseSchema:
    loaded = schemathesis.openapi.from_dict(OPENAPI, config=schemathesis.Config.from_dict(
        {"generation": GENERATION, "phases": phases}))
    loaded.app = application
    return loaded


schema = _schema()
# A viewer's writes are refused before their input is read: the coverage phase's
# boundary values would all meet the same 403, so a viewer gets examples and fuzzing.
viewer_schema = _schema(coverage={"enabled": False})


def made_valid(case, known: dict[str, object]) -> None:
    """Valid input per the schema made valid per the rules a schema cannot state.

    OpenAPI describes each value alone; it cannot say that a strategy or position
    must exist, that ``end`` comes after ``start``, that a limit order has a price
    and a market order none, that an opening time lies in the past, or that the
    idempotency header and field agree. Positive cases get those right here, so
    ``positive_data_acceptance`` checks everything else; negative cases are left as
    generated (they are refused anyway).
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    for values in (case.query, case.body):
        if not isinstance(values, dict):
            continue
        if "strategy" in values:
            values["strategy"] = known["strategy"]
        if isinstance(values.get("position"), int):
            values["position"] = known["position"]
        if values.get("start") and values.get("end"):
            values["start"], values["end"] = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"
        if "opened_at" in values:
            values["opened_at"] = known["opened_at"]
        if values.get("order_type", "market") == "market" and "symbol" in values:
            values.pop("price", None)
        elif values.get("order_type") == "limit" and values.get("price") is None:
            values["price"] = "1"
    key = case.headers.get("Idempotency-Key") if case.headers else None
    if key is not None and isinstance(case.body, dict) and "idempotency_key" in case.body:
        case.body["idempotency_key"] = key


@pytest.fixture
def in_process_requests():
    """Keep the test's connection open across calls, as Django's own test client does.

    The WSGI handler would otherwise close it at each request (it is inside the
    test's transaction), and the next query would fail on a closed connection.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(db, staff_user, in_process_requests) -> str:
    return api_token_issue(user=staff_user, actor="test")


@pytest.fixture
def viewer_token(db, viewer_user, in_process_requests) -> str:
    return api_token_issue(user=viewer_user, actor="test")


@pytest.fixture
def known(db, strategy) -> dict[str, object]:
    """A little data for the generated calls to find."""
    position = PositionFactory(strategy=strategy)
    HealthSnapshotFactory(position=position)
    OrderFactory(account=strategy.account, position=position)
    return {"strategy": strategy.name, "position": position.pk,
            "opened_at": (timezone.now() - timedelta(hours=1)).isoformat()}


def _call_and_validate(case, token: str, known: dict[str, object]) -> None:
    made_valid(case, known)
    # Each call in its own savepoint, rolled back: examples stay independent, and a
    # query PostgreSQL refuses (answered 400) does not abort the test's transaction.
    savepoint = transaction.savepoint()
    try:
        case.call_and_validate(headers={"Authorization": f"Token {token}"})
    finally:
        transaction.savepoint_rollback(savepoint)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_passes_every_check_as_staff(case, staff_token, known):
    _call_and_validate(case, staff_token, known)


@pytest.mark.slow
@viewer_schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_passes_every_check_as_viewer(case, viewer_token, known):
    _call_and_validate(case, viewer_token, known)
