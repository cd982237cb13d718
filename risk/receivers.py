"""Reactions to other apps' signals; each calls one service."""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS

from risk import services


def resolve_alerts_of_closed_position(sender: Any, position: Any, **kwargs: Any) -> None:
    """A closed position has no risk left: its open alerts are resolved with the close."""
    services.position_alerts_resolve(position_id=position.pk)


def create_risk_check_row(sender: Any, instance: Any, created: bool, using: str = DEFAULT_DB_ALIAS,
                          **kwargs: Any) -> None:
    """Every strategy has its check row from the start (the check also creates missing ones).

    The row goes to the database the strategy was saved to.
    """
    if created and not kwargs.get("raw"):
        services.strategy_check_row(strategy_id=instance.pk, using=using)


def recompute_danger_on_marks(sender: Any, account_id: int, at: Any, **kwargs: Any) -> None:
    """Fresh marks on an account's positions: the price-driven danger, in seconds."""
    from risk.marks import danger_on_marks

    danger_on_marks(account_id=account_id, at=at)
