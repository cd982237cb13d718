"""The admin writes numbers and times as the dashboard: no trailing zeros, 24-hour clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tradingsite.admin_display import PlainDecimalInput
from tradingsite.testing.factories import OrderFactory, PositionFactory, TradeFactory

EVENING = datetime(2026, 3, 2, 18, 4, 11, tzinfo=UTC)


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.mark.django_db
def test_lists_show_decimals_without_trailing_zeros_and_24_hour_times(admin_client, strategy):
    PositionFactory(strategy=strategy, quantity=Decimal("800"), entry_price=Decimal("1.1756"),
                    opened_at=EVENING)
    OrderFactory(quantity=Decimal("800"), expected_price=Decimal("1.1756"), created_at=EVENING)
    TradeFactory(strategy=strategy, quantity=Decimal("800"), entry_price=Decimal("1.1756"),
                 closed_at=EVENING, opened_at=EVENING.replace(hour=17),
                 pnl=Decimal("-3.25"), pnl_percent=Decimal("-0.3455"))
    for path in ("/admin/lifecycle/position/", "/admin/execution/order/",
                 "/admin/lifecycle/trade/"):
        page = admin_client.get(path).content.decode()
        assert "800.000000000000" not in page and "1.1756000000" not in page, path
        assert ">800<" in page or ">800 /" in page or "/ 800<" in page, path
        assert "p.m." not in page and "a.m." not in page, path
    trades = admin_client.get("/admin/lifecycle/trade/").content.decode()
    assert "2026-03-02 18:04:11" in trades
    assert "-3.25 USDT (-0.35 %)" in trades


@pytest.mark.django_db
def test_a_read_only_decimal_on_a_change_page_has_no_trailing_zeros(admin_client, strategy):
    trade = TradeFactory(strategy=strategy, quantity=Decimal("800"), fees=Decimal("0.5"))
    page = admin_client.get(f"/admin/lifecycle/trade/{trade.pk}/change/").content.decode()
    assert "800.000000000000" not in page and ">800<" in page
    assert ">0.5<" in page


def test_an_editable_decimal_input_shows_the_plain_value():
    assert PlainDecimalInput().format_value(Decimal("10000.0000000000")) == "10000"
    assert PlainDecimalInput().format_value(Decimal("-0E-10")) == "0"
    assert PlainDecimalInput().format_value(None) is None
