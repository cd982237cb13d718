"""Execution's reads: orders and actions as the API, the drivers and the sweeps load them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from execution.models import Action, ActionState, ExchangeAccount, Order, OrderStatus
from execution.pipeline import order_config, order_deadline

# A pending action no on-commit task picked up within this is run by the sweep.
ACTION_PICKUP_SECONDS = 5
# A running action whose order was written this recently is left to the worker that wrote it
# (it settles the action right after the order's final write).
ACTION_SETTLE_SECONDS = 5


def order_list(*, status: str | None = None, purpose: str | None = None,
               account: str | None = None, symbol: str | None = None,
               active: bool | None = None) -> QuerySet[Order]:
    """Orders newest first, filtered as the API asks (``active``: not final yet)."""
    orders = Order.objects.select_related("account", "strategy").order_by("-created_at", "-pk")
    for lookup, value in (("status", status), ("purpose", purpose), ("account__name", account),
                          ("symbol", symbol)):
        if value:
            orders = orders.filter(**{lookup: value})
    if active is not None:
        orders = orders.filter(status__in=OrderStatus.active() if active else OrderStatus.final())
    return orders


def action_list(*, state: str | None = None, kind: str | None = None) -> QuerySet[Action]:
    """The action queue newest first, by state and kind."""
    filters = {name: value for name, value in (("state", state), ("kind", kind)) if value}
    return Action.objects.filter(**filters).order_by("-created_at", "-pk")


def account_list() -> QuerySet[ExchangeAccount]:
    """Exchange accounts by name, each with its stream's row (status, balances)."""
    return ExchangeAccount.objects.select_related("stream").order_by("name", "pk")


def order_fresh(order: Order) -> Order:
    return Order.objects.select_related("account", "strategy", "position", "action").get(
        pk=order.pk)


def action_with_targets(action_id: int) -> Action | None:
    return Action.objects.select_related("position__strategy__account", "order__account",
                                         "order__strategy").filter(pk=action_id).first()


def actions_due(now=None) -> list[Action]:
    """Pending actions nobody picked up, and running ones whose worker went silent.

    A running action is due when its lease ran out and nothing carries it on: no
    order of its own (a close) or being cancelled (a cancel) is still active or was
    written in the last ``ACTION_SETTLE_SECONDS``. An active order has its own chain and
    the order-timeout sweep behind it; taking its action over while it waits in a busy
    queue would only add chains.
    """
    now = now or timezone.now()
    pending = Action.objects.filter(
        state=ActionState.PENDING, created_at__lte=now - timedelta(seconds=ACTION_PICKUP_SECONDS))
    # an order written this recently may be settling its action in its worker right now
    settling = Q(updated_at__gt=now - timedelta(seconds=ACTION_SETTLE_SECONDS))
    silent = Action.objects.filter(
        Q(lease_until__lte=now) | Q(lease_until__isnull=True), state=ActionState.RUNNING,
    ).exclude(Exists(Order.objects.filter(
        Q(status__in=OrderStatus.active()) | settling, action=OuterRef("pk")))).exclude(
        Exists(Order.objects.filter(Q(status=OrderStatus.CANCELLING) | settling,
                                    pk=OuterRef("order_id"))))
    return sorted((*_with_targets(pending)[:100], *_with_targets(silent)[:100]),
                  key=lambda action: (action.created_at, action.pk))[:100]


def _with_targets(actions: Any) -> Any:
    return actions.select_related("position__strategy__account", "order__account",
                                  "order__strategy").order_by("created_at", "pk")


def orders_overdue(now=None, *, account_id: int | None = None) -> list[Order]:
    """Active orders past their strategy's ``orderTimeoutSeconds`` (or stuck cancelling)."""
    now = now or timezone.now()
    candidates = Order.objects.filter(status__in=OrderStatus.active())
    if account_id is not None:
        candidates = candidates.filter(account_id=account_id)
    candidates = candidates.select_related(
        "account", "strategy", "position__strategy", "action").order_by("created_at")[:500]
    return [o for o in candidates if now >= order_deadline(o, order_config(o))]


def accounts_with_overdue_orders(now=None) -> list[int]:
    """Accounts that hold an order past its timeout (the sweep's fan-out, database only)."""
    return sorted({order.account_id for order in orders_overdue(now)})
