"""Partial fills on entries and closes: what is filled is kept, what is left is
cancelled at the order timeout, replaced (emergency closes) or left held (normal
closes); the trade is recomputed from every exit fill."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Order
from lifecycle.models import Position, PositionFill
from lifecycle.services import position_open, position_request_close
from tests.integration.conftest import BTC, START, inject_faults, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def account():
    return paper_account()


@pytest.fixture
def strategy(account):
    return strategy_on(account, "mean-revert")


@pytest.fixture
def position(strategy):
    """0.5 BTC long from 48 000, handed over at the start."""
    return position_open(strategy=strategy, symbol=BTC, side="long", quantity=Decimal("0.5"),
                         entry_price=Decimal("48000"))


def exit_fills(position):
    return list(PositionFill.objects.filter(position=position, kind="exit").order_by("pk")
                .values_list("fill_key", "quantity", "price", "fee", "filled_at"))


def test_a_partially_filled_entry_opens_the_position_with_what_filled(platform, client,
                                                                     staff_user, account,
                                                                     strategy):
    inject_faults(account, {"kind": "partial_fill", "ratio": "0.4"})
    client.force_login(staff_user)
    response = client.post("/api/execution/orders/place", {
        "strategy": strategy.name, "symbol": BTC, "side": "sell", "quantity": "0.5"},
        content_type="application/json")
    platform.run()

    order = Order.objects.get(pk=response.json()["id"])
    assert (order.status, order.filled_quantity, order.timed_out) == (
        "cancelled", Decimal("0.2"), True)
    position = Position.objects.get()
    # sold 0.2 at the bid 49 995; entry fee 0.2 × 49 995 × 0.055 %
    assert (position.side, position.quantity, position.initial_quantity, position.entry_price,
            position.entry_fee, position.opened_at) == (
        "short", Decimal("0.2"), Decimal("0.2"), Decimal("49995"), Decimal("5.499450"),
        START + timedelta(seconds=30))
    assert paper_exchange_for(account).positions[BTC].size == Decimal("-0.2")


def test_an_emergency_close_filled_in_part_is_completed_by_its_market_replacement(
        platform, account, position):
    paper = inject_faults(account, {"kind": "partial_fill", "ratio": "0.4"})

    action, _ = position_request_close(position=position, reason="timeout", actor="timeout")
    platform.run(until=START + timedelta(seconds=10))
    held = Position.objects.get(pk=position.pk)
    assert (held.state, held.quantity, held.closed_quantity) == (
        "CLOSING", Decimal("0.3"), Decimal("0.2"))
    partial = held.events.get(kind="partial_fill")
    assert {key: Decimal(value) for key, value in partial.details.items()} == {
        "quantity": Decimal("0.2"), "price": Decimal("49995"), "remaining": Decimal("0.3")}
    paper.set_price(BTC, Decimal("49000"))  # the market falls before the rest is sold
    platform.run()

    root = f"close-{action.pk}"
    assert list(Order.objects.filter(action=action).order_by("pk").values_list(
        "client_order_id", "quantity", "filled_quantity", "average_fill_price", "status")) == [
        (root, Decimal("0.5"), Decimal("0.2"), Decimal("49995"), "cancelled"),
        (f"{root}-r1", Decimal("0.3"), Decimal("0.3"), Decimal("48995.1"), "filled")]
    assert exit_fills(position) == [
        (f"{root}:0.2", Decimal("0.2"), Decimal("49995"), Decimal("5.49945"), START),
        (f"{root}-r1:0.3", Decimal("0.3"), Decimal("48995.1"), Decimal("8.0841915"),
         START + timedelta(seconds=30))]
    trade = Position.objects.get(pk=position.pk).trade
    # exit value 0.2 × 49 995 + 0.3 × 48 995.1 = 24 697.53 → 49 395.06 a coin;
    # 24 697.53 − 24 000 − fees 13.5836415
    assert (trade.quantity, trade.exit_price, trade.fees, trade.pnl, trade.exit_reason) == (
        Decimal("0.5"), Decimal("49395.0600000000"), Decimal("13.5836415000"),
        Decimal("683.9463585000"), "timeout")
    assert [(o.client_order_id, o.filled) for o in paper.orders.values()] == [
        (root, Decimal("0.2")), (f"{root}-r1", Decimal("0.3"))]


def test_a_normal_close_filled_in_part_leaves_the_rest_held_until_the_next_close(
        platform, account, position):
    paper = inject_faults(account, {"kind": "partial_fill", "ratio": "0.4"})

    first, _ = position_request_close(position=position, reason="signal", actor="bot",
                                      kind="close")
    platform.run()
    first.refresh_from_db()
    assert (first.state, first.error) == ("failed",
                                          "not final after 30 s: cancelled (0.2 of 0.5 filled)")
    held = Position.objects.get(pk=position.pk)
    assert (held.state, held.quantity, held.closed_quantity, held.close_reason) == (
        "OPEN", Decimal("0.3"), Decimal("0.2"), "")

    platform.run(until=START + timedelta(minutes=5))
    paper.set_price(BTC, Decimal("50500"))
    second, _ = position_request_close(position=position, reason="signal", actor="bot",
                                       kind="close")
    platform.run()

    assert list(Order.objects.filter(action=second).values_list("quantity", "status")) == [
        (Decimal("0.3"), "filled")]
    trade = Position.objects.get(pk=position.pk).trade
    # 0.2 sold at 49 995 and 0.3 at 50 494.9: exit value 9 999 + 15 148.47 = 25 147.47
    assert (trade.quantity, trade.exit_price, trade.closed_at) == (
        Decimal("0.5"), Decimal("50294.9400000000"), START + timedelta(minutes=5))
    assert trade.pnl == Decimal("25147.47") - Decimal("24000") - (
        Decimal("0.2") * Decimal("49995") + Decimal("0.3") * Decimal("50494.9")
    ) * Decimal("0.00055")


def test_a_fill_arriving_during_the_cancel_shrinks_the_replacement(platform, account,
                                                                  position):
    paper = inject_faults(account, {"kind": "partial_fill", "ratio": "0.4"},
                          {"kind": "fill_on_cancel", "ratio": "0.5"})

    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    platform.run()

    root = f"close-{action.pk}"
    # 0.2 filled at once, half of the 0.3 left just before the cancel, 0.15 by the replacement
    assert list(Order.objects.filter(action=action).order_by("pk").values_list(
        "client_order_id", "quantity", "filled_quantity", "status")) == [
        (root, Decimal("0.5"), Decimal("0.35"), "cancelled"),
        (f"{root}-r1", Decimal("0.15"), Decimal("0.15"), "filled")]
    assert [(key, qty) for key, qty, *_ in exit_fills(position)] == [
        (f"{root}:0.2", Decimal("0.2")), (f"{root}:0.35", Decimal("0.15")),
        (f"{root}-r1:0.15", Decimal("0.15"))]
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.trade.quantity) == ("CLOSED", Decimal("0.5"))
    assert sum(o.filled for o in paper.orders.values()) == Decimal("0.5")
