"""Single-row writes: what reaches the database is what the ORM would have written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from execution.models import Order, OrderStatus
from tradingsite.services import trading_halt, trading_halted_sql
from tradingsite.sql import insert_row, update_row

pytestmark = pytest.mark.django_db


def _order(account, **fields) -> Order:
    return Order(account=account, client_order_id=fields.pop("client_order_id", "o-1"),
                 symbol="BTC/USDT:USDT", side="buy", quantity=Decimal("0.5"), **fields)


def test_insert_row_writes_every_field_with_defaults_and_sets_the_key(account):
    order = _order(account, expected_price=Decimal("50000.5"))

    assert insert_row(order) is True

    stored = Order.objects.get(pk=order.pk)
    assert (stored.client_order_id, stored.status, stored.quantity, stored.expected_price,
            stored.filled_quantity, stored.attempts) == (
        "o-1", OrderStatus.CREATED, Decimal("0.5"), Decimal("50000.5"), Decimal("0"), 0)
    assert stored.created_at == order.created_at
    assert stored.updated_at == order.updated_at  # auto_now filled in by the field itself
    assert order._state.adding is False


def test_insert_row_is_refused_in_the_same_statement_by_its_guard(account):
    trading_halt(reason="test", actor="test")

    assert insert_row(_order(account), unless=trading_halted_sql()) is False
    assert Order.objects.count() == 0


def test_update_row_is_a_compare_and_set_on_expected_values_and_excluded_statuses(account):
    order = _order(account)
    insert_row(order)

    order.status, order.attempts = OrderStatus.SUBMITTING, 1
    assert update_row(order, ["status", "attempts"], expect={"status": "created",
                                                              "attempts": 0}) is True
    order.attempts = 2
    assert update_row(order, ["attempts"], expect={"attempts": 0}) is False  # moved on
    order.status = OrderStatus.FILLED
    assert update_row(order, ["status"], expect={"status": OrderStatus.SUBMITTING}) is True
    order.status = OrderStatus.CANCELLED  # the row is final now: no longer SUBMITTING
    assert update_row(order, ["status"], expect={"status": OrderStatus.SUBMITTING}) is False

    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.attempts) == (OrderStatus.FILLED, 1)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_async_commit_write_sends_the_setting_and_the_statement_in_one_round_trip(account):
    order = _order(account)
    insert_row(order)
    order.status = OrderStatus.OPEN

    with CaptureQueriesContext(connection) as queries:
        update_row(order, ["status"], async_commit=True)

    assert len(queries.captured_queries) == 1
    assert queries.captured_queries[0]["sql"].startswith(
        "SET LOCAL synchronous_commit TO OFF; UPDATE")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN
    with connection.cursor() as cursor:  # the setting ended with that statement
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_a_rider_travels_with_the_insert_and_runs_even_when_its_guard_refuses(account):
    """The gate's count of an order rides in the order's INSERT on PostgreSQL (one
    statement); elsewhere it runs just before. Either way it runs, guard or not."""
    from tradingsite.sql import update_rows_write

    first, second = _order(account, client_order_id="o-1"), _order(account, client_order_id="o-2")
    insert_row(first)
    insert_row(second)
    rider = update_rows_write(Order, ("attempts", "last_error"), [(first.pk, 3, "counted"),
                                                                  (second.pk, 4, "also")])
    with CaptureQueriesContext(connection) as queries:
        recorded = insert_row(_order(account, client_order_id="o-3"), riders=(rider,))
    trading_halt(reason="test", actor="test")
    rider_again = update_rows_write(Order, ("attempts",), [(first.pk, 5)])
    refused = insert_row(_order(account, client_order_id="o-4"), unless=trading_halted_sql(),
                         riders=(rider_again,))

    assert (recorded, refused) == (True, False)
    assert sorted(Order.objects.values_list("client_order_id", "attempts", "last_error")) == [
        ("o-1", 5, "counted"), ("o-2", 4, "also"), ("o-3", 0, "")]
    statements = [q["sql"] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        assert len(statements) == 1 and statements[0].startswith('WITH rider_0 AS (UPDATE ')
    else:
        assert len(statements) == 2  # executemany, logged as "2 times: UPDATE …", then the insert
        assert statements[0].startswith('2 times: UPDATE "execution_order"')
        assert statements[1].startswith('INSERT INTO "execution_order"')
