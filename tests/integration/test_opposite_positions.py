"""A long and a short of the same symbol on one account (found by the fault harness).

A one-way exchange holds them as one net position. A reduce-only close of the smaller
side would be refused there (or, on a lenient exchange, fill without moving anything):
the database would count the position closed while the exchange still holds it. Such a
close goes as a plain order, which nets on the exchange exactly as the database counts.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Order
from lifecycle.models import Position
from lifecycle.services import position_request_close
from tests.integration.conftest import BTC, paper_account, strategy_on
from tradingsite.invariants import check_all, violations_of

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def enter(client, strategy, side: str, quantity: str) -> Position:
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
