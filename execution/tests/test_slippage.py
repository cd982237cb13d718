"""Slippage: estimated before placing, refused above maxSlippagePercent, emergency override."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import Order, OrderStatus
from execution.services import action_process, order_place, run_inline
from execution.slippage import signed_slippage_percent, walk_book
from execution.tests.conftest import SYMBOL, configure
from lifecycle.models import PositionState
from lifecycle.services import position_request_close
from risk.models import AlertSeverity, RiskAlert
from tradingsite.testing.factories import PositionFactory

THIN_BOOK = {"spreadPercent": 0.02, "levelNotional": 5000, "levelStepPercent": 0.5}


@pytest.mark.parametrize(("side", "expected", "actual", "slippage"), [
    ("buy", "100", "101", "1"), ("buy", "100", "99.5", "-0.5"),
    ("sell", "100", "99", "1"), ("sell", "100", "100.25", "-0.25"),
])
def test_adverse_slippage_is_positive_for_both_sides(side, expected, actual, slippage):
    assert signed_slippage_percent(side, Decimal(expected), Decimal(actual)) == Decimal(slippage)


def test_walking_the_book_averages_the_levels_taken():
    levels = [(Decimal("100"), Decimal("1")), (Decimal("101"), Decimal("1"))]
    assert walk_book(levels, Decimal("1.5")) == Decimal("150.5") / Decimal("1.5")
    assert walk_book(levels, Decimal("3")) == Decimal("302") / 3  # beyond the book: last level
    assert walk_book([], Decimal("1")) is None


@pytest.mark.django_db
def test_a_normal_order_above_the_limit_is_refused_and_never_sent(paper_account, paper_strategy,
                                                                 sleep):
    paper = configure(paper_account)

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=paper_strategy, symbol=SYMBOL, side="buy",
                        quantity=Decimal("0.5"), expected_price=Decimal("49000"))

    assert order.status == OrderStatus.REJECTED
    assert order.error_code == "slippage"
    assert order.estimated_slippage_percent == Decimal("2.05102")  # 50 005 vs 49 000
    assert order.last_error == (
        "estimated slippage 2.0510% exceeds maxSlippagePercent 0.5% (expected price 49000, "
        "estimated fill 50005); order not sent")
    assert paper.calls["place"] == 0
    assert order.position_id is None


@pytest.mark.django_db
def test_a_thin_book_is_walked_for_the_estimate(paper_account, paper_strategy, sleep):
    paper = configure(paper_account, book=THIN_BOOK)

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account,
                        strategy=paper_strategy, symbol=SYMBOL, side="sell",
                        quantity=Decimal("0.5"))

    # bids 49 995, 49 745, 49 495, 49 245, 48 995 (0.1 BTC each) → 49 495 on average
    assert order.estimated_slippage_percent == Decimal("1.01")
    assert order.status == OrderStatus.REJECTED
    assert paper.calls["place"] == 0


@pytest.mark.django_db
def test_the_strategy_may_allow_more_slippage(paper_account, sleep):
    from tradingsite.testing.factories import StrategyFactory

    strategy = StrategyFactory(account=paper_account,
                               live_trading={"orderExecution": {"maxSlippagePercent": 1.5}})
    configure(paper_account, book=THIN_BOOK)

    order = order_place(drive=run_inline(sleep=sleep), account=paper_account, strategy=strategy,
                        symbol=SYMBOL, side="sell", quantity=Decimal("0.5"))

    assert order.status == OrderStatus.FILLED
    assert order.slippage_percent == Decimal("1.01")


@pytest.mark.django_db
def test_an_emergency_close_goes_ahead_and_raises_a_risk_alert(paper_account, paper_strategy,
                                                              sleep):
    configure(paper_account, book=THIN_BOOK)
    position = PositionFactory(strategy=paper_strategy, symbol=SYMBOL, quantity=Decimal("0.5"),
                               entry_price=Decimal("49000"))
    action, _ = position_request_close(position=position, reason="risk", actor="risk")

    action_process(action.pk, drive=run_inline(sleep=sleep))

    order = Order.objects.get(action=action)
    assert order.status == OrderStatus.FILLED
    assert order.estimated_slippage_percent == Decimal("1.01")
    assert order.average_fill_price == Decimal("49495")
    assert order.slippage_percent == Decimal("1.01")
    position.refresh_from_db()
    assert position.state == PositionState.CLOSED
    alert = RiskAlert.objects.get(position=position, kind="slippage")
    assert alert.severity == AlertSeverity.CRITICAL
    assert alert.message == (
        f"Emergency close close-{action.pk} (BTC/USDT:USDT) sent anyway: estimated slippage "
        "1.0100% exceeds maxSlippagePercent 0.5% (expected price 50000, estimated fill 49495)")
    assert alert.occurrences == 1


@pytest.mark.django_db
def test_a_repeated_override_refreshes_the_one_open_alert(paper_account, paper_strategy, sleep):
    from execution.alerts import raise_slippage_alert
    from execution.pipeline import order_submit

    position = PositionFactory(strategy=paper_strategy, symbol=SYMBOL)
    order = order_submit(account=paper_account, position=position, symbol=SYMBOL, side="sell",
                         quantity=Decimal("0.5"), purpose="emergency_close")
    raise_slippage_alert(order, detail="estimated slippage 1.0100% exceeds …")
    alert = raise_slippage_alert(order, detail="estimated slippage 1.2000% exceeds …")

    assert RiskAlert.objects.filter(position=position, kind="slippage").count() == 1
    assert alert.occurrences == 2
    assert alert.message.endswith("sent anyway: estimated slippage 1.2000% exceeds …")
