"""What the guard hears from lower layers (connected in ``GuardConfig.ready``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q

from guard.models import ScopeKind, ScopeLedger
from lifecycle.models import Position, PositionSource


def _untrack(position: Position) -> None:
    """A position the gate did not count (not an entry it let through): its scopes' ledgers
    are counted again at their next counted decision."""
    account_id = position.strategy.account_id
    ledgers = ScopeLedger.objects.filter(
        Q(scope__kind=ScopeKind.GLOBAL)
        | Q(scope__kind=ScopeKind.ACCOUNT, scope__account_id=account_id)
        | Q(scope__kind=ScopeKind.STRATEGY, scope__strategy_id=position.strategy_id),
        tracked=True)
    with transaction.atomic():
        # locked in the order every decision takes them (a single UPDATE would take them in
        # whatever order it scans, and could deadlock with a decision)
        held = list(ledgers.select_for_update(of=("self",)).order_by(
            "scope__level", "scope_id").values_list("pk", flat=True))
        if held:
            ScopeLedger.objects.filter(pk__in=held).update(tracked=False)


def position_opened_outside_the_gate(sender: Any, position: Position, **kwargs: Any) -> None:
    """Hand-overs and reconciliation open positions without an entry order."""
    if position.source != PositionSource.FILL:
        _untrack(position)


def position_saved(sender: Any, instance: Position, created: bool, **kwargs: Any) -> None:
    """A position made with ``save()`` (the admin, scripts): the pipeline never does that."""
    if created:
        _untrack(instance)
