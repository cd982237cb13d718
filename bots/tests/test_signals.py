"""The signal webhook: TradingView-style alerts open through the entry path, close through
the action queue, once per signal id."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bots.connections import signal_source_issue
from bots.models import TradeSignal
from bots.tests.conftest import post
from execution.models import Action, ActionKind, CloseReason, Order, OrderPurpose, OrderType
from lifecycle.models import PositionState
from tests.hostile.conftest import row_counts
from tradingsite.services import trading_halt, trading_resume
from tradingsite.testing.factories import PositionFactory

pytestmark = pytest.mark.django_db

UNAUTHORIZED = {"detail": "Invalid webhook credentials.", "code": "not_authenticated"}


@pytest.fixture
def signals(strategy):
    source, secret = signal_source_issue(strategy=strategy, actor="test")
    return source, secret, f"/api/signals/{strategy.name}"


def _open(secret: str, **overrides):
    return {"secret": secret, "signal_id": "tv-1", "action": "open", "symbol": "BTC/USDT:USDT",
            "side": "long", "quantity": "0.25", "price": "50000.5", **overrides}


def test_an_open_records_an_entry_order_through_the_pipeline_once(web, signals, strategy):
    _, secret, url = signals
    response = post(web, url, _open(secret))
    assert response.status_code == 202, response.content
    order = Order.objects.get()
    assert (order.account, order.strategy, order.symbol, order.side, order.quantity,
            order.order_type, order.purpose, order.expected_price, order.reduce_only) == (
        strategy.account, strategy, "BTC/USDT:USDT", "buy", Decimal("0.25"), OrderType.MARKET,
        OrderPurpose.ENTRY, Decimal("50000.5"), False)
    assert response.json() == {
        "signal_id": "tv-1", "action": "open", "closes": [],
        "order": {"id": order.pk, "client_order_id": order.client_order_id,
                  "status": "created", "symbol": "BTC/USDT:USDT", "side": "buy",
                  "quantity": "0.25"}}
    before = row_counts()
    again = post(web, url, _open(secret))
    assert (again.status_code, again.json()) == (200, response.json())
    assert row_counts() == before


def test_the_same_signal_id_with_another_body_is_a_409_naming_the_fields(web, signals):
    _, secret, url = signals
    post(web, url, _open(secret))
    before = row_counts()
    response = post(web, url, _open(secret, quantity="0.5", side="short"))
    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["fields"]) == ("request_mismatch", ["quantity", "side"])
    assert row_counts() == before


def test_a_notional_is_converted_at_the_senders_price_rounded_down(web, signals):
    _, secret, url = signals
    body = {k: v for k, v in _open(secret, notional="100", price="30000", side="short").items()
            if k != "quantity"}
    assert post(web, url, body).status_code == 202
    order = Order.objects.get()
    # 100 / 30000 = 0.00333…: rounded down to the quantity's 12 places
    assert (order.side, order.quantity, order.expected_price) == (
        "sell", Decimal("0.003333333333"), Decimal("30000"))


def test_a_refused_open_leaves_the_signal_id_free(web, signals):
    _, secret, url = signals
    trading_halt(reason="maintenance", actor="test")
    response = post(web, url, _open(secret))
    assert response.status_code == 409
    assert response.json()["code"] == "trading_halted"
    assert not TradeSignal.objects.exists() and not Order.objects.exists()
    trading_resume(actor="test")
    assert post(web, url, _open(secret)).status_code == 202


def test_a_close_queues_the_close_of_the_strategys_positions_in_the_symbol(web, signals,
                                                                         strategy):
    _, secret, url = signals
    long_ = PositionFactory(strategy=strategy, symbol="BTC/USDT:USDT", side="long")
    PositionFactory(strategy=strategy, symbol="ETH/USDT:USDT", side="long")
    body = {"secret": secret, "signal_id": "tv-close", "action": "close",
            "symbol": "BTC/USDT:USDT"}
    response = post(web, url, body)
    assert response.status_code == 202, response.content
    action = Action.objects.get()
    assert (action.kind, action.position, action.reason, action.requested_by) == (
        ActionKind.CLOSE, long_, CloseReason.SIGNAL, "signal:tv-close")
    assert response.json() == {"signal_id": "tv-close", "action": "close", "order": None,
                               "closes": [{"position": long_.pk, "action_id": action.pk,
                                           "created": True}]}
    assert post(web, url, body).json() == response.json()
    assert Action.objects.count() == 1


def test_a_close_with_nothing_to_close_is_a_409_and_keeps_the_id_free(web, signals, strategy):
    _, secret, url = signals
    PositionFactory(strategy=strategy, symbol="BTC/USDT:USDT", side="long",
                    state=PositionState.CLOSED, closed_at="2026-01-01T00:00:00Z")
    body = {"secret": secret, "signal_id": "tv-9", "action": "close", "symbol": "BTC/USDT:USDT"}
    response = post(web, url, body)
    assert response.status_code == 409
    assert response.json() == {"detail": f"strategy {strategy.name} holds no position in "
                                         "BTC/USDT:USDT", "code": "no_position"}
    assert not TradeSignal.objects.exists()


@pytest.mark.parametrize("mistake", ["wrong secret", "unknown strategy", "no secret",
                                     "disabled"])
def test_a_wrong_credential_is_one_401(web, signals, strategy, mistake):
    source, secret, url = signals
    body = _open(secret)
    if mistake == "wrong secret":
        body["secret"] = secret.upper() if secret.upper() != secret else secret + "x"
    elif mistake == "unknown strategy":
        url = "/api/signals/no-such-strategy"
    elif mistake == "no secret":
        del body["secret"]
    else:
        source.enabled = False
        source.save(update_fields=["enabled"])
    before = row_counts()
    response = post(web, url, body)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert row_counts() == before


@pytest.mark.parametrize(("field", "value", "named"), [
    ("quantity", "NaN", "quantity"), ("quantity", "0", "quantity"), ("quantity", 0.25, "quantity"),
    ("quantity", "1,5", "quantity"), ("price", "-1", "price"), ("side", "LONG", "side"),
    ("action", "buy", "action"), ("symbol", "", "symbol"), ("signal_id", "", "signal_id"),
    ("signal_id", "x" * 129, "signal_id"), ("Quantity", "1", "Quantity"),
    ("notional", "100", "quantity"),
])
def test_bad_input_is_a_400_naming_the_field(web, signals, field, value, named):
    _, secret, url = signals
    before = row_counts()
    response = post(web, url, _open(secret, **{field: value}))
    assert response.status_code == 400, response.content
    assert named in response.json(), response.json()
    assert row_counts() == before


def test_an_open_needs_a_side_and_one_amount_and_a_close_takes_none(web, signals):
    _, secret, url = signals
    no_side = {k: v for k, v in _open(secret).items() if k != "side"}
    assert post(web, url, no_side).json() == {"side": ["An open needs a side (long or short)."]}
    notional_without_price = {k: v for k, v in _open(secret, notional="10").items()
                              if k not in ("quantity", "price")}
    assert post(web, url, notional_without_price).json() == {
        "price": ["A notional is converted at this price: send it too."]}
    close = {"secret": secret, "signal_id": "c", "action": "close", "symbol": "BTC/USDT:USDT",
             "quantity": "1"}
    assert post(web, url, close).json() == {
        "quantity": ["A close takes no amount: it closes the whole position."]}
