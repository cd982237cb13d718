"""Risk alerts raised by execution (an emergency close that goes ahead despite slippage).

One open alert per position and kind (the ``RiskAlert`` constraint): a repeat
updates it — message, last seen, occurrences — instead of adding rows.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from risk.models import AlertSeverity, RiskAlert
from tradingsite.live import broadcast

SLIPPAGE_ALERT = "slippage"


def raise_slippage_alert(order: Any, *, detail: str) -> RiskAlert:
    """Record that an emergency close was sent although its slippage estimate is too high."""
    message = f"Emergency close {order.client_order_id} ({order.symbol}) sent anyway: {detail}"
    now = timezone.now()
    lookup = {"position_id": order.position_id, "kind": SLIPPAGE_ALERT, "resolved_at": None}
    try:
        with transaction.atomic():
            alert, _ = RiskAlert.objects.update_or_create(
                **lookup,
                defaults={"severity": AlertSeverity.CRITICAL, "message": message,
                          "last_seen": now, "occurrences": F("occurrences") + 1},
                create_defaults={"severity": AlertSeverity.CRITICAL, "message": message,
                                 "first_seen": now, "last_seen": now, "occurrences": 1})
    except IntegrityError:  # created concurrently: update the one that won
        RiskAlert.objects.filter(**lookup).update(message=message, last_seen=now,
                                                  occurrences=F("occurrences") + 1)
        alert = RiskAlert.objects.get(**lookup)
    alert.refresh_from_db(fields=["occurrences"])
    broadcast("risk.alert", {"id": alert.pk, "position": alert.position_id, "kind": alert.kind,
                             "severity": alert.severity, "message": alert.message,
                             "occurrences": alert.occurrences})
    return alert
