"""A long and a short of the same symbol on one account (found by the fault harness).

A one-way exchange holds them as one net position. A reduce-only close of the smaller
side would be refused there (or, on a lenient exchange, fill without moving anything):
the database would count the position closed while the exchange still holds it. Such a
close goes as a plain order, which nets on the exchange exactly as the database counts.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.base import OrderRequest
from execution.exchanges.paper import paper_exchange_for
from execution.models import Order
from lifecycle.models import Position
from lifecycle.services import position_request_close
from operations.invariants import check_all, violations_of
from tests.integration.conftest import BTC, START, inject_faults, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def enter(client, strategy, side: str, quantity: str) -> int:
    response = client.post("/api/execution/orders/place", {
        "strategy": strategy.name, "symbol": BTC, "side": side, "quantity": quantity},
        content_type="application/json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict-reduce-only"])
def test_closing_the_long_while_a_larger_short_is_held_nets_on_the_exchange_as_in_the_database(
        platform, client, staff_user, strict):
    account = paper_account(strictReduceOnly=strict)
    strategy = strategy_on(account, "both-ways")
    client.force_login(staff_user)
    enter(client, strategy, "buy", "0.003")
    enter(client, strategy, "sell", "0.004")
    platform.run()
    paper = paper_exchange_for(account)
    assert paper.positions[BTC].size == Decimal("-0.001")  # one net position
    long = Position.objects.get(side="long")

    position_request_close(position=long, reason="manual", actor="operator")
    platform.run()

    close = Order.objects.get(position=long, purpose="emergency_close")
    assert (close.status, close.filled_quantity, close.reduce_only) == (
        "filled", Decimal("0.003"), False)
    assert Position.objects.get(pk=long.pk).state == "CLOSED"
    short = Position.objects.get(side="short")
    assert (short.state, short.quantity) == ("OPEN", Decimal("0.004"))
    assert paper.positions[BTC].size == Decimal("-0.004")
    assert violations_of(check_all()) == []


def test_a_close_is_reduce_only_when_every_position_of_the_symbol_is_on_its_side(
        platform, client, staff_user):
    account = paper_account()
    strategy = strategy_on(account, "one-way")
    client.force_login(staff_user)
    enter(client, strategy, "buy", "0.003")
    enter(client, strategy, "buy", "0.002")
    platform.run()
    first = Position.objects.order_by("pk").first()

    position_request_close(position=first, reason="manual", actor="operator")
    platform.run()

    close = Order.objects.get(position=first, purpose="emergency_close")
    assert (close.status, close.reduce_only) == ("filled", True)
    assert paper_exchange_for(account).positions[BTC].size == Decimal("0.002")


def test_an_entry_on_the_closes_side_still_in_flight_makes_the_close_a_plain_order(
        platform, client, staff_user):
    # the buy entry reached the exchange, its worker died before the answer: the exchange's
    # net short is 0.001, the database still knows only the 0.004 short
    account = paper_account()
    strategy = strategy_on(account, "in-flight")
    client.force_login(staff_user)
    enter(client, strategy, "sell", "0.004")
    platform.run()
    paper = paper_exchange_for(account)
    in_flight = Order.objects.get(pk=enter(client, strategy, "buy", "0.003"))
    platform.commit()
    assert len(platform.lose("drive_order")) == 1  # its worker died
    paper.place_order(OrderRequest(symbol=BTC, side="buy", order_type="market",
                                   amount=Decimal("0.003"),
                                   client_order_id=in_flight.client_order_id))
    Order.objects.filter(pk=in_flight.pk).update(status="submitting", attempts=1)
    short = Position.objects.get()

    position_request_close(position=short, reason="manual", actor="operator")
    platform.run()

    close = Order.objects.get(position=short, purpose="emergency_close")
    assert (close.status, close.filled_quantity, close.reduce_only) == (
        "filled", Decimal("0.004"), False)
    assert paper.positions[BTC].size == Decimal("0.003")
    platform.schedule("execution.tasks.sweep_order_timeouts", 5)
    platform.run(until=START + timedelta(seconds=40))  # the timeout sweep finds the entry
    long = Position.objects.get(side="long")
    assert (long.quantity, Order.objects.get(pk=in_flight.pk).status) == (
        Decimal("0.003"), "filled")
    assert violations_of(check_all()) == []


def test_a_close_resent_after_an_opposite_entry_filled_goes_as_a_plain_order(
        platform, client, staff_user):
    account = paper_account()
    strategy = strategy_on(account, "resent")
    client.force_login(staff_user)
    enter(client, strategy, "buy", "0.004")
    platform.run()
    paper = inject_faults(account, {"on": "place", "kind": "unavailable"})
    long = Position.objects.get()
    position_request_close(position=long, reason="manual", actor="operator")
    platform.run(until=START)  # recorded reduce-only, the first send refused (503)
    close = Order.objects.get(position=long, purpose="emergency_close")
    assert (close.reduce_only, close.status) == (True, "unknown")
    enter(client, strategy, "sell", "0.005")  # a short opened before the resend
    platform.run()

    close.refresh_from_db()
    assert (close.status, close.attempts, close.reduce_only) == ("filled", 2, False)
    assert paper.positions[BTC].size == Decimal("-0.005")
    assert violations_of(check_all()) == []
