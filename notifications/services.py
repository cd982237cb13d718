"""Writing the outbox: one ``Notification`` per event, in the transaction of the event.

The receivers (``notifications.receivers``) call these from inside the transaction that
raised the alert, moved the positions or ended the order, so the message commits or
rolls back with its event: a crash after commit loses nothing (the delivery pass finds
the row), a rollback sends nothing. Only the row is written here — cheap and in bulk;
rendering, routing and sending happen in the delivery pass, after commit.

A failure to record (a bug, a constraint) is logged and swallowed inside a savepoint:
a notification must never stop a close, an alert or a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import CharField, F, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from execution.models import CloseReason, OrderPurpose, OrderStatus
from lifecycle.models import Position, PositionState
from notifications.models import Notification
from risk.models import AlertSeverity
from tradingsite.sql import InArray, insert_rows, insert_select

log = logging.getLogger(__name__)

INFO, WARNING, CRITICAL = AlertSeverity.INFO, AlertSeverity.WARNING, AlertSeverity.CRITICAL
# The timeout pass's steps, as messages: what state was reached, how bad it is.
MOVED_KINDS = {PositionState.WARNING: ("position_warning", WARNING),
               PositionState.CRITICAL: ("position_timeout", CRITICAL)}
ORDER_KINDS = {OrderStatus.REJECTED: "order_rejected", OrderStatus.FAILED: "order_failed",
               OrderStatus.EXPIRED: "order_expired"}
CLOSE_SEVERITY = {CloseReason.RISK: CRITICAL, CloseReason.SHUTDOWN: WARNING}
# Exits that end an emergency: the trader wants to know they are over.
EMERGENCY_EXITS = {CloseReason.TIMEOUT, CloseReason.RISK, CloseReason.SHUTDOWN}


def dedupe_key(kind: str, position_id: int | None = None, obj: str = "") -> str:
    """One message per kind and object within the dedupe window."""
    if position_id:
        return f"{kind}:position:{position_id}"[:160]
    return f"{kind}:{obj or '-'}"[:160]


# A burst of commits (a thousand closes) asks for one pass, not one each: a pass is queued
# to start this long after the first commit of a burst, and the commits of this process
# until then count on it (it starts after they committed, so it sees their rows).
PASS_DELAY_SECONDS = 0.2
_queued_pass: dict[str, datetime] = {}


def deliver_soon() -> None:
    """Ask a worker for a delivery pass shortly (after commit); the beat sweep is the fallback."""
    from notifications.tasks import deliver_notifications

    now = timezone.now()
    since, due = _queued_pass.get("since"), _queued_pass.get("due")
    if since is not None and due is not None and since <= now < due:
        return  # this process queued a pass that starts after now
    _queued_pass.update(since=now, due=now + timedelta(seconds=PASS_DELAY_SECONDS))
    try:
        deliver_notifications.apply_async(countdown=PASS_DELAY_SECONDS)
    except Exception:  # a broker hiccup must not fail the caller: the sweep delivers
        _queued_pass.clear()
        log.warning("could not queue a delivery pass; the next sweep delivers", exc_info=True)


def _recorded(write: Any, what: str) -> bool:
    """Run ``write`` in a savepoint; a failure is logged and the caller goes on."""
    try:
        with transaction.atomic():
            write()
    except Exception:
        log.exception("notification not recorded: %s", what)
        return False
    transaction.on_commit(deliver_soon, robust=True)
    return True


def record(notifications: list[Notification]) -> list[Notification]:
    """Write ``notifications`` in the caller's transaction (one INSERT); ``[]`` on failure."""
    if not notifications:
        return []
    if not _recorded(lambda: Notification.objects.bulk_create(notifications),
                     f"{len(notifications)} × {notifications[0].kind}"):
        return []
    return notifications


def notify(*, kind: str, severity: str, position_id: int | None = None, obj: str = "",
           context: dict[str, Any] | None = None, now: datetime | None = None
           ) -> Notification | None:
    """Record one event for the traders."""
    notification = Notification(kind=kind[:64], severity=severity, position_id=position_id,
                                dedupe_key=dedupe_key(kind, position_id, obj),
                                context=context or {}, created_at=now or timezone.now())
    return (record([notification]) or [None])[0]


# --- one function per kind of event (called by the receivers) -------------------------------

ALERT_FIELDS = ("kind", "severity", "dedupe_key", "position", "context", "created_at", "title",
                "body", "link")


def notify_alerts(alerts: Iterable[Any]) -> int:
    """Alerts just raised (one or a risk tick's thousand): one row each, one statement.

    A tick's thousand go in with one ``COPY`` on PostgreSQL (about 2.5× faster than
    ``bulk_create``): this runs inside the tick's transaction.
    """
    now = timezone.now()
    rows = [(a.kind[:64], a.severity, dedupe_key(a.kind, a.position_id), a.position_id,
             {"alert_id": a.pk, "message": a.message}, now, "", "", "") for a in alerts]
    if not rows:
        return 0
    written = _recorded(lambda: insert_rows(Notification, ALERT_FIELDS, rows),
                        f"{len(rows)} × {rows[0][0]}")
    return len(rows) if written else 0


def notify_positions_moved(position_ids: list[int], to_state: str,
                           at: datetime | None = None) -> int:
    """The timeout pass moved positions to WARNING or CRITICAL: one row each, one statement."""
    if to_state not in MOVED_KINDS or not position_ids:
        return 0
    kind, severity = MOVED_KINDS[to_state]
    now = at or timezone.now()

    def write() -> None:
        insert_select(Notification, Position.objects.filter(InArray("pk", position_ids)), {
            "kind": kind, "severity": severity, "position_id": F("pk"),
            "dedupe_key": Concat(Value(f"{kind}:position:"), Cast("pk", CharField()),
                                 output_field=CharField()),
            "context": {"to_state": to_state, "by": "timeout pass"}, "created_at": now})

    return len(position_ids) if _recorded(write, f"{len(position_ids)} × {kind}") else 0


def notify_close_requested(*, position: Any, action: Any, reason: str, kind: str,
                           actor: str, note: str = "") -> Notification | None:
    """A close was queued (the timeout pass's own closes are told by position_timeout)."""
    if reason == CloseReason.TIMEOUT:
        return None
    return notify(kind="close_requested", severity=CLOSE_SEVERITY.get(reason, INFO),
                  position_id=position.pk,
                  context={"reason": reason, "kind": kind, "actor": actor,
                           "action_id": action.pk, "note": note[:500]})


def notify_close_failed(*, position: Any, reason: str, actor: str) -> Notification | None:
    return notify(kind="close_failed", severity=CRITICAL, position_id=position.pk,
                  context={"reason": reason, "actor": actor, "state": position.state})


def notify_position_closed(*, position: Any, trade: Any) -> Notification | None:
    severity = WARNING if trade.exit_reason in EMERGENCY_EXITS else INFO
    return notify(kind="position_closed", severity=severity, position_id=position.pk,
                  context={"trade_id": trade.pk, "exit_reason": trade.exit_reason,
                           "exit_price": str(trade.exit_price), "pnl": str(trade.pnl),
                           "pnl_percent": str(trade.pnl_percent), "fees": str(trade.fees),
                           "holding_seconds": trade.holding_seconds,
                           "quantity": str(trade.quantity)})


def notify_order_unfilled(order: Any) -> Notification | None:
    """Rejected, failed or expired (an operator's cancel is no news); a close action's
    order is told by close_failed, which says what the position does next."""
    kind = ORDER_KINDS.get(order.status)
    if kind is None or (order.action_id and order.purpose != OrderPurpose.ENTRY):
        return None
    severity = WARNING if order.purpose == OrderPurpose.ENTRY else CRITICAL
    return notify(kind=kind, severity=severity, position_id=order.position_id,
                  obj=f"order:{order.pk}",
                  context={"order_id": order.pk, "client_order_id": order.client_order_id,
                           "purpose": order.purpose, "side": order.side, "symbol": order.symbol,
                           "quantity": str(order.quantity),
                           "filled_quantity": str(order.filled_quantity),
                           "status": order.status, "error": order.last_error[:500],
                           "error_code": order.error_code,
                           "account": order.account.name if order.account_id else ""})


def notify_platform(*, kind: str, mode: str, host: str, pid: int, clean: bool = True,
                    **context: Any) -> Notification | None:
    severity = INFO if kind == "platform_started" else (WARNING if clean else CRITICAL)
    return notify(kind=kind, severity=severity, obj=f"{host}:{pid}",
                  context={"mode": mode, "host": host, "pid": pid, "clean": clean,
                           **{k: str(v) for k, v in context.items()}})
