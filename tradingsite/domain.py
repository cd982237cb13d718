"""Trading vocabulary every layer shares: decimal sizes of money and quantities, close reasons.

Here rather than in an app so that an order (execution), a position (lifecycle) and a
trade report (analytics) use the same definitions without importing each other.
"""

from __future__ import annotations

from django.db import models

MONEY = {"max_digits": 28, "decimal_places": 10}
QTY = {"max_digits": 28, "decimal_places": 12}


class CloseReason(models.TextChoices):
    """Why a position is closed; also the exit reason of its trade."""

    SIGNAL = "signal", "Signal (normal exit)"
    TIMEOUT = "timeout", "Timeout"
    RISK = "risk", "Risk"
    MANUAL = "manual", "Manual"
    SHUTDOWN = "shutdown", "Shutdown"
    EXTERNAL = "external", "External (closed outside the platform)"
