"""Slippage arithmetic: estimated fill prices from a book, signed slippage of a fill.

Sign convention: adverse slippage is positive. A buy filled above the expected
price and a sell filled below it both have positive slippage.

    slippage % = (fill − expected) / expected × 100   for a buy
    slippage % = (expected − fill) / expected × 100   for a sell

Pure functions, no Django: the pipeline and the paper exchange share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

SIX_PLACES = Decimal("0.000001")


def signed_slippage_percent(side: str, expected: Decimal, actual: Decimal) -> Decimal:
    """Slippage of ``actual`` against ``expected`` for a ``buy``/``sell``; adverse > 0."""
    if expected <= 0:
        raise ValueError(f"expected price must be positive, got {expected}")
    move = (actual - expected) if side == "buy" else (expected - actual)
    return (move / expected * 100).quantize(SIX_PLACES)


def walk_book(levels: Sequence[tuple[Decimal, Decimal]], quantity: Decimal) -> Decimal | None:
    """Average price of taking ``quantity`` from ``levels`` (best first).

    When the book is thinner than the order, the rest is assumed to fill at the
    last (worst) level shown, so the estimate is a lower bound of the real cost.
    ``None`` for an empty book.
    """
    if not levels:
        return None
    remaining = Decimal(quantity)
    cost = Decimal("0")
    price = levels[0][0]
    for price, size in levels:
        take = min(remaining, size)
        cost += take * price
        remaining -= take
        if remaining <= 0:
            break
    if remaining > 0:
        cost += remaining * price
    return cost / Decimal(quantity)
