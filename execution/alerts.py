"""Risk alerts raised by execution: an emergency close sent despite its slippage estimate.

The alert itself (one open alert per position and kind, refreshed on repeat, pushed
live) is ``risk.services.raise_alert``; this only says what execution reports.
"""

from __future__ import annotations

from typing import Any

from risk.models import AlertSeverity, RiskAlert
from risk.services import raise_alert

SLIPPAGE_ALERT = "slippage"


def raise_slippage_alert(order: Any, *, detail: str) -> RiskAlert:
    """Record that an emergency close went ahead although its estimate exceeds the limit."""
    return raise_alert(
        position=order.position, kind=SLIPPAGE_ALERT, severity=AlertSeverity.CRITICAL,
        message=f"Emergency close {order.client_order_id} ({order.symbol}) sent anyway: "
                f"{detail}")
