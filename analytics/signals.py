"""Keep realised-PnL checkpoints true when trades change (connected in ``apps.py``)."""

from __future__ import annotations

from typing import Any

from lifecycle.models import Trade


def trade_saved(sender: type[Trade], instance: Trade, created: bool, using: str,
                **kwargs: Any) -> None:
    from analytics.selectors import forget_checkpoints_after

    # An edited trade may have moved: its old close time is unknown here.
    forget_checkpoints_after(instance.closed_at if created else None, using)


def trade_deleted(sender: type[Trade], instance: Trade, using: str, **kwargs: Any) -> None:
    from analytics.selectors import forget_checkpoints_after

    forget_checkpoints_after(instance.closed_at, using)
