"""Orders on the paper exchange end to end: polling, the 30 s order timeout with
cancel-and-verify, market replacements of emergency closes, limit orders, slippage.

Entries go in through the API; every step after that runs on the workers, one
``drive_order`` message per step, so the exact step cadence is asserted.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from execution.exchanges.paper import paper_exchange_for
from execution.models import Action, Order
from lifecycle.models import Position
from lifecycle.services import position_open, position_request_close
from risk.models import RiskAlert
from tests.integration.conftest import BTC, START, inject_faults, paper_account, strategy_on

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def account():
    return paper_account()


@pytest.fixture
def strategy(account):
    return strategy_on(account, "intraday")


def place(operator, strategy, **fields) -> Order:
    body = {"strategy": strategy.name, "symbol": BTC, "side": "buy", "quantity": "0.5", **fields}
    response = operator.post("/api/execution/orders/place", body,
                             content_type="application/json")
    assert response.status_code == 202, response.content
    return Order.objects.get(pk=response.json()["id"])


def countdowns(platform):
    return [m.countdown for m in platform.ran("drive_order")]


def test_an_entry_left_open_is_polled_every_second_then_cancelled_at_30_s(
        platform, operator, account, strategy):
    paper = inject_faults(account, {"kind": "stay_open"})

    order = place(operator, strategy)
    platform.run()

    assert countdowns(platform) == [0.0] + [1.0] * 30
    order.refresh_from_db()
    assert (order.status, order.timed_out, order.filled_quantity, order.finalized_at) == (
        "cancelled", True, 0, START + timedelta(seconds=30))
    assert order.last_error == "not final after 30 s: cancelled"
    assert (paper.calls["place"], paper.calls["fetch"], paper.calls["cancel"]) == (1, 30, 1)
    assert paper.orders["paper-1"].status == "canceled"
    assert not Position.objects.exists()


def test_an_entry_that_fills_while_being_cancelled_opens_its_position(
        platform, operator, account, strategy):
    inject_faults(account, {"kind": "stay_open"}, {"kind": "fill_on_cancel"})

    order = place(operator, strategy)
    platform.run()

    order.refresh_from_db()
    assert (order.status, order.timed_out, order.filled_quantity) == (
        "filled", True, Decimal("0.5"))
    position = Position.objects.get()
    assert (position.quantity, position.entry_price, position.opened_at) == (
        Decimal("0.5"), Decimal("50005"), START + timedelta(seconds=30))


def test_a_resting_limit_entry_is_cancelled_by_the_operator_and_the_next_fills_as_maker(
        platform, operator, account, strategy):
    paper = paper_exchange_for(account)
    first = place(operator, strategy, order_type="limit", price="49800")
    platform.run(until=START + timedelta(seconds=5))

    response = operator.post(f"/api/execution/orders/{first.pk}/cancel",
                             content_type="application/json")
    assert (response.status_code, response.json()["kind"]) == (202, "cancel_order")
    platform.run(until=START + timedelta(seconds=5))  # the action queue cancels it
    assert Order.objects.get(pk=first.pk).status == "cancelled"

    second = place(operator, strategy, order_type="limit", price="49900")
    platform.run(until=START + timedelta(seconds=10))
    paper.set_price(BTC, Decimal("49850"))  # the ask 49 855 crosses the 49 900 bid
    platform.run()

    second.refresh_from_db()
    assert (second.status, second.average_fill_price, second.fee) == (
        "filled", Decimal("49900"), Decimal("4.99"))  # maker 0.02 % of 24 950
    assert second.filled_at == START + timedelta(seconds=11)
    position = Position.objects.get()
    assert (position.entry_price, position.entry_fee, position.quantity) == (
        Decimal("49900"), Decimal("4.99"), Decimal("0.5"))
    assert [(o.price, o.status) for o in paper.orders.values()] == [
        (Decimal("49800"), "canceled"), (Decimal("49900"), "closed")]
    assert Order.objects.get(pk=first.pk).last_error == "cancel requested by operator"


def test_an_emergency_close_that_never_fills_is_replaced_three_times_then_given_up(
        platform, account, strategy):
    position = position_open(strategy=strategy, symbol=BTC, side="short",
                             quantity=Decimal("0.3"), entry_price=Decimal("51000"))
    paper = inject_faults(account, {"kind": "stay_open", "times": 4})

    action, _ = position_request_close(position=position, reason="risk", actor="risk")
    platform.run()

    chain = list(Order.objects.filter(action=action).order_by("pk").values_list(
        "client_order_id", "side", "quantity", "status", "timed_out", "finalized_at"))
    root = f"close-{action.pk}"
    assert chain == [
        (cid, "buy", Decimal("0.3"), "cancelled", True, START + timedelta(seconds=s))
        for cid, s in ((root, 30), (f"{root}-r1", 60), (f"{root}-r2", 90),
                       (f"{root}-r3", 120))]
    assert (paper.calls["place"], paper.calls["cancel"]) == (4, 4)
    action.refresh_from_db()
    assert (action.state, action.error) == ("failed", "not final after 30 s: cancelled")
    position = Position.objects.get(pk=position.pk)
    assert (position.state, position.quantity, position.close_reason) == (
        "OPEN", Decimal("0.3"), "")


def test_slippage_refuses_a_normal_close_but_not_an_emergency_close(platform, account,
                                                                     strategy):
    thin = {**account.paper_config, "book": {"spreadPercent": 0.02, "levelNotional": 5000,
                                             "levelStepPercent": 0.1}}
    account.paper_config = thin
    account.save(update_fields=["paper_config"])
    position = position_open(strategy=strategy, symbol=BTC, side="long",
                             quantity=Decimal("2"), entry_price=Decimal("50000"))

    normal, _ = position_request_close(position=position, reason="signal", actor="bot",
                                       kind="close")
    platform.run()
    normal.refresh_from_db()
    refused = Order.objects.get(action=normal)
    assert (refused.status, refused.error_code, refused.attempts) == ("rejected", "slippage", 0)
    # 2 BTC walk twenty 0.1-BTC levels 50 apart from the 49 995 bid: average 49 520,
    # 0.96 % under the 50 000 mid
    assert refused.last_error == (
        "estimated slippage 0.9600% exceeds maxSlippagePercent 0.5% (expected price 50000, "
        "estimated fill 49520); order not sent")
    assert (normal.state, Position.objects.get(pk=position.pk).state) == ("failed", "OPEN")
    assert paper_exchange_for(account).calls["place"] == 0

    platform.run(until=START + timedelta(seconds=1))
    emergency, _ = position_request_close(position=position, reason="risk", actor="risk")
    platform.run()

    sent = Order.objects.get(action=emergency)
    assert (sent.status, sent.filled_quantity, sent.average_fill_price) == (
        "filled", Decimal("2"), Decimal("49520"))
    assert sent.estimated_slippage_percent == refused.estimated_slippage_percent
    alert = RiskAlert.objects.get(kind="slippage")
    assert (alert.severity, alert.position_id) == ("CRITICAL", position.pk)
    assert alert.message.startswith(f"Emergency close close-{emergency.pk} (BTC/USDT:USDT) sent "
                                    "anyway: estimated slippage")
    trade = Position.objects.get(pk=position.pk).trade
    # (49 520 − 50 000) × 2 − 2 × 49 520 × 0.055 %
    assert (trade.exit_reason, trade.pnl) == ("risk", Decimal("-1014.4720000000"))
    assert Action.objects.filter(state="done").count() == 1


def test_a_client_retrying_after_a_lost_202_gets_the_same_order_and_nothing_is_placed_twice(
        platform, operator, account, strategy):
    paper = paper_exchange_for(account)
    body = {"strategy": strategy.name, "symbol": BTC, "side": "buy", "quantity": "0.5",
            "expected_price": "50000"}

    def send(**fields):
        return operator.post("/api/execution/orders/place", {**body, **fields},
                             content_type="application/json", HTTP_IDEMPOTENCY_KEY="entry-1")

    first = send()  # the 202 is lost on the way back
    platform.run()
    retry = send()
    platform.run()
    changed = send(quantity="0.6", side="sell")
    in_body = operator.post("/api/execution/orders/place", {**body, "idempotency_key": "entry-1"},
                            content_type="application/json")

    order = Order.objects.get()
    assert (first.status_code, retry.status_code, in_body.status_code) == (202, 200, 200)
    assert first.json()["id"] == retry.json()["id"] == in_body.json()["id"] == order.pk
    assert retry.json()["status"] == "filled"
    assert changed.status_code == 409
    assert (changed.json()["code"], changed.json()["fields"]) == (
        "request_mismatch", ["quantity", "side"])
    assert paper.calls["place"] == 1
    assert {m.args for m in platform.ran("drive_order")} == {(order.pk,)}
    assert Position.objects.get().quantity == Decimal("0.5")


def test_a_halted_entry_leaves_its_key_free_for_the_retry(platform, operator, strategy):
    body = {"strategy": strategy.name, "symbol": BTC, "side": "buy", "quantity": "0.5",
            "idempotency_key": "after-halt"}
    operator.post("/api/trading/halt/", {"reason": "maintenance"},
                  content_type="application/json")
    refused = operator.post("/api/execution/orders/place", body, content_type="application/json")
    operator.post("/api/trading/resume/", content_type="application/json")
    accepted = operator.post("/api/execution/orders/place", body, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (409, "trading_halted")
    assert accepted.status_code == 202
    assert Order.objects.count() == 1
