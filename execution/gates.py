"""The pre-trade gate: every order passes it before it is recorded.

Execution knows orders, not positions, equity or trading states: the portfolio guard
(``guard``) registers the gate as the ``pretrade_gate`` hook (``execution.handlers``), and
``pipeline.placement.order_submit`` — the one path of every order (API entries, close
actions, replacements, signals, scripts) — calls ``pretrade_check`` in the transaction
that records the order, so a row lock the gate takes is held until the order is
committed. The gate refuses by raising ``OrderRefused`` with a reason code and the
numbers behind it; the refusal is kept through the ``order_refusal_store`` hook
(``refusal_record``), and the API answers 409 with the code and the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from execution import handlers
from tradingsite.errors import ConflictError, TradingHalted
from tradingsite.sql import Write

TRADING_HALTED = "TRADING_HALTED"


class OrderRefused(ConflictError):
    """A gate refused the order: ``reason_code`` (``MAX_OPEN_POSITIONS``…) and its numbers.

    ``code`` (the API's error code) is the reason code in lower case.
    """

    def __init__(self, reason_code: str, message: str, *, scope: str = "",
                 numbers: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.reason_code = reason_code
        self.code = reason_code.lower()
        self.scope = scope
        self.numbers = dict(numbers or {})
        self.order: Any = None  # the refused order, set by ``pretrade_check``
        self.requested_by = ""  # who asked, when the caller knows (the API's user)

    def details(self) -> dict[str, Any]:
        return {"reason_code": self.reason_code, "scope": self.scope, "numbers": self.numbers}


class OrderHalted(OrderRefused, TradingHalted):
    """Refused because trading is halted: also a ``TradingHalted``, as before the gate."""


def order_refused(reason_code: str, message: str, *, scope: str = "",
                  numbers: Mapping[str, Any] | None = None) -> OrderRefused:
    """The refusal for ``reason_code`` (a halt is also a ``TradingHalted``)."""
    kind = OrderHalted if reason_code == TRADING_HALTED else OrderRefused
    return kind(reason_code, message, scope=scope, numbers=numbers)


def pretrade_check(order: Any) -> Write | None:
    """Run every gate on ``order`` (unsaved); ``OrderRefused`` when one refuses.

    Call it inside the transaction that records the order, and pass what it returns
    (the gate's count of the order, if any) to the order's insert as a rider.
    """
    try:
        return handlers.pretrade_gate(order)
    except OrderRefused as refused:
        refused.order = order
        raise


def refusal_record(refused: OrderRefused) -> None:
    """Store a refusal. A caller whose own transaction rolled the first record back (it
    wrapped ``order_submit``) records it again after the rollback."""
    handlers.order_refusal_store(refused)
