"""Risk alerts raised by execution: what the operator must see about an order.

- ``slippage``: an emergency close sent despite its slippage estimate;
- ``order_unknown``: an order whose outcome was unknown was proven absent from the
  exchange (CRITICAL for an exit, WARNING for an entry);
- ``order_reappeared``: an order declared absent showed up on the exchange later and
  was taken back (CRITICAL);
- ``fill_unapplied``: an exit fill the position could not take (CRITICAL): the fill
  stays on the order and the position is marked for reconciliation;
- ``untracked_position``: the account holds a position the platform does not track
  (CRITICAL; WARNING once adopted), about ``<account> <symbol>``;
- ``external_close``: a tracked position the exchange shows flat was closed outside
  the platform (WARNING);
- ``position_mismatch``: tracked and exchange quantities differ otherwise (CRITICAL).

The alert itself (one open alert per position and kind, refreshed on repeat, pushed
live) is the risk monitor's (``risk.services.alert_raise``, registered as the
``order_alert`` and ``account_alert*`` hooks); this only says what execution reports.
"""

from __future__ import annotations

from typing import Any

from execution import handlers

SLIPPAGE_ALERT = "slippage"
ORDER_UNKNOWN_ALERT = "order_unknown"
ORDER_REAPPEARED_ALERT = "order_reappeared"
FILL_UNAPPLIED_ALERT = "fill_unapplied"
UNTRACKED_POSITION_ALERT = "untracked_position"
EXTERNAL_CLOSE_ALERT = "external_close"
POSITION_MISMATCH_ALERT = "position_mismatch"


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


def raise_account_alert(*, kind: str, subject: str, message: str, critical: bool = True
                        ) -> Any:
    """An alert about an account's book (no position of ours), one open per kind and subject."""
    return handlers.account_alert(kind=kind, subject=subject, critical=critical,
                                  message=message)


def resolve_account_alert(*, kind: str, subject: str) -> int:
    """The condition is gone (e.g. the untracked position was closed): resolve its alert."""
    return handlers.account_alert_resolve(kind=kind, subject=subject)


def open_account_alert_subjects(kind: str) -> set[str]:
    """Subjects of the open account alerts of ``kind``."""
    return handlers.account_alert_subjects(kind=kind)
