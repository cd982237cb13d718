"""One way to write numbers for people: the admin, the commands and messages.

Decimals without trailing zeros or exponent (``800``, ``1.1756``), never ``-0``; ratios
as percentages (``29.7 %``). Machine output (``--json``, the API) keeps raw numbers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

DASH = "—"


def plain(value: Any) -> str:
    """A decimal as written by hand: 800, 1.1756, 0.0004, -3.25 (never 1E+2 or -0)."""
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return str(value)
    if not number.is_finite():
        return str(number)
    text = f"{number.normalize():f}"
    return "0" if text in ("-0", "0") or number.is_zero() else text


def number(value: Any, places: int | None = None) -> str:
    """``plain``, rounded half away from zero to ``places`` first (``None``: as it is)."""
    if value is None or value == "":
        return DASH
    if places is None:
        return plain(value)
    try:
        rounded = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    except InvalidOperation:
        return str(value)
    return plain(rounded)


def percent(value: Any, places: int = 1, *, ratio: bool = False) -> str:
    """``29.7 %``: a percentage, or a ratio (0.297) written as one."""
    if value is None or value == "":
        return DASH
    amount = Decimal(str(value)) * (100 if ratio else 1)
    return f"{number(amount, places)} %"


def money(value: Any, currency: str = "", places: int = 2) -> str:
    """``-12.5 USDT``: an amount to the cent, trailing zeros dropped, with its currency."""
    text = number(value, places)
    return f"{text} {currency}" if currency and text != DASH else text
