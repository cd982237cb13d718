"""Risk alerts raised by execution: what the operator must see about an order.

- ``slippage``: an emergency close sent despite its slippage estimate;
- ``order_unknown``: an order whose outcome was unknown was proven absent from the
  exchange (CRITICAL for an exit, WARNING for an entry);
- ``order_reappeared``: an order declared absent showed up on the exchange later and
  was taken back (CRITICAL);
- ``fill_unapplied``: an exit fill the position could not take (CRITICAL): the fill
  stays on the order and the position is marked for reconciliation.

The alert itself (one open alert per position and kind, refreshed on repeat, pushed
live) is the risk monitor's (``risk.services.raise_alert``, registered as the
``order_alert`` hook); this only says what execution reports.
"""

from __future__ import annotations

from typing import Any

from execution import handlers

SLIPPAGE_ALERT = "slippage"
ORDER_UNKNOWN_ALERT = "order_unknown"
ORDER_REAPPEARED_ALERT = "order_reappeared"
FILL_UNAPPLIED_ALERT = "fill_unapplied"


def raise_slippage_alert(order: Any, *, detail: str) -> Any:
    """Record that an emergency close went ahead although its estimate exceeds the limit."""
    return handlers.order_alert(
        order, kind=SLIPPAGE_ALERT, critical=True,
        message=f"Emergency close {order.client_order_id} ({order.symbol}) sent anyway: "
                f"{detail}")


def raise_order_alert(order: Any, *, kind: str, message: str, critical: bool = True) -> Any:
    """An alert about ``order``, on its position when it has one."""
    return handlers.order_alert(
        order, kind=kind, critical=critical,
        message=f"{order.client_order_id} ({order.purpose} {order.side} {order.symbol}): "
                f"{message}")
