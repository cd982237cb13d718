"""Pre-trade gates: every order passes them before it is recorded.

Execution knows orders, not positions, equity or trading states: a higher layer (the
portfolio guard, ``guard``) registers its gate here (``register_pretrade_gate``) and
``pipeline.order_submit`` — the one path by which any order is recorded (API entries,
close actions, replacements, scripts) — calls ``pretrade_check`` in the transaction
that records the order, so a row lock a gate takes is held until the order is
committed. A gate refuses by raising ``OrderRefused`` with a reason code and the
numbers behind it; the refusal is handed to the registered recorders
(``refusal_record``), and the API answers 409 with the code and the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tradingsite.errors import ConflictError, TradingHalted

TRADING_HALTED = "TRADING_HALTED"

PretradeGate = Callable[[Any], None]  # receives the unsaved ``Order``
RefusalRecorder = Callable[["OrderRefused"], None]

_gates: list[PretradeGate] = []
_recorders: list[RefusalRecorder] = []


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


def register_pretrade_gate(gate: PretradeGate) -> None:
    """Every order recorded from now on passes ``gate`` (registered once)."""
    if gate not in _gates:
        _gates.append(gate)


def register_refusal_recorder(recorder: RefusalRecorder) -> None:
    if recorder not in _recorders:
        _recorders.append(recorder)


def pretrade_check(order: Any) -> None:
    """Run every gate on ``order`` (unsaved); ``OrderRefused`` when one refuses.

    Call it inside the transaction that records the order.
    """
    for gate in _gates:
        try:
            gate(order)
        except OrderRefused as refused:
            refused.order = order
            raise


def refusal_record(refused: OrderRefused) -> None:
    """Store a refusal. A caller whose own transaction rolled the first record back (it
    wrapped ``order_submit``) records it again after the rollback."""
    for recorder in _recorders:
        recorder(refused)
