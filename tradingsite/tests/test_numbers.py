"""The one number format of the admin and the commands."""

from decimal import Decimal

import pytest

from tradingsite.numbers import money, number, percent, plain


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("800.000000000000"), "800"), (Decimal("1.1756000000"), "1.1756"),
    (Decimal("1E+2"), "100"), (Decimal("-0.0000"), "0"), (Decimal("0.00040"), "0.0004"),
    ("-3.2500", "-3.25"), (12, "12"), ("not a number", "not a number"),
])
def test_plain_drops_trailing_zeros_and_exponents_and_minus_zero(value, text):
    assert plain(value) == text


@pytest.mark.parametrize(("value", "places", "text"), [
    (-0.04, 1, "0"), (-0.05, 1, "-0.1"), (2.5, 0, "3"), (40.0, 1, "40"), (None, 1, "—"),
    (1.23456, None, "1.23456"),
])
def test_number_rounds_half_away_from_zero_and_never_prints_minus_zero(value, places, text):
    assert number(value, places) == text


def test_percent_and_money():
    assert percent(0.297297, ratio=True) == "29.7 %"
    assert percent(Decimal("0.0137"), 3) == "0.014 %"
    assert money(Decimal("-12.5000"), "USDT") == "-12.5 USDT"
    assert money(None, "USDT") == "—"
