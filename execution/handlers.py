"""Where execution hands over to the layers above it, without importing them.

Execution knows exchanges and orders, not positions. What an order's fill or end
means for a position, which configuration an order runs under, who is told about an
order in trouble and how a close action is carried out belong to ``lifecycle`` and
``risk``; they register their handlers here in ``AppConfig.ready()``, which every
process runs (web, worker, beat, management commands, tests). A hook nobody
registered raises ``HandlerMissing``: an order fill must never be dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from execution.gates import OrderRefused
    from execution.models import Action, ExchangeAccount, Order
    from tradingsite.live_config import OrderExecutionConfig
    from tradingsite.sql import Write

HOOKS = {
    "order_config": "the orderExecution config an order runs under (its strategy's)",
    "action_config": "the orderExecution config an action runs under (its strategy's)",
    "entry_filled": "an entry order ended with a fill: open its position, return it",
    "exit_filled": "a new fill of an exit order: apply it to its position (raise when it "
                   "cannot take it)",
    "fill_unapplied": "an exit fill its position could not take: mark the position",
    "replacement_quantity": "how much a timed-out emergency close still has to close",
    "close_reduce_only": "whether a close of an order's position may go reduce-only",
    "order_alert": "tell the operator about an order (kind, severity, message)",
    "account_alert": "tell the operator about an account's book (kind, subject, severity, "
                     "message)",
    "account_alert_resolve": "an account alert's condition is gone: resolve it",
    "account_alert_subjects": "the subjects of the open account alerts of a kind",
    "close_action_run": "carry a close action on (place or resume its close order)",
    "close_action_settle": "the close order of an action ended: settle the action",
    "markets_in_use": "(account, symbol, timeframe) of every market a position is held in",
    "pretrade_gate": "every order before it is recorded (in that transaction): refuse it "
                     "(execution.gates.OrderRefused) or let it through, with the write "
                     "that counts it in (tradingsite.sql.Write, run with the order's insert)",
    "order_refusal_store": "keep an order the gate refused, with its reason code and numbers",
}

_registered: dict[str, Callable[..., Any]] = {}


class HandlerMissing(ImproperlyConfigured):
    """An execution hook was called in a process where no app registered it."""


@dataclass(frozen=True)
class ExitFill:
    """A new fill of an exit order, keyed so that it is applied once."""

    fill_key: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    filled_at: datetime


def register(**handlers: Callable[..., Any]) -> None:
    """Register handlers by hook name (``AppConfig.ready``); a later one replaces an earlier."""
    unknown = sorted(set(handlers) - set(HOOKS))
    if unknown:
        raise ImproperlyConfigured(f"unknown execution hooks {unknown}; known: {sorted(HOOKS)}")
    _registered.update(handlers)


def registered() -> dict[str, Callable[..., Any]]:
    """The handlers of this process, by hook (for tests and checks)."""
    return dict(_registered)


def _handler(hook: str) -> Callable[..., Any]:
    try:
        return _registered[hook]
    except KeyError:
        raise HandlerMissing(f"no handler registered for the execution hook {hook!r} "
                             f"({HOOKS[hook]}): is its app installed?") from None


# --- the hooks, typed ------------------------------------------------------------------

def order_config(order: Order) -> OrderExecutionConfig:
    return _handler("order_config")(order)


def action_config(action: Action) -> OrderExecutionConfig:
    return _handler("action_config")(action)


def entry_filled(order: Order, *, opened_at: datetime) -> Any:
    """Called inside the order's final write: the position commits with the order or not at all."""
    return _handler("entry_filled")(order, opened_at=opened_at)


def exit_filled(order: Order, fill: ExitFill) -> None:
    """Called inside the order's write; ``DomainError``/``ValueError``: the position refused."""
    _handler("exit_filled")(order, fill)


def fill_unapplied(order: Order, *, reason: str) -> None:
    _handler("fill_unapplied")(order, reason=reason)


def replacement_quantity(order: Order) -> Decimal | None:
    """What a replacement of ``order`` may still close; ``None``: nothing is replaced."""
    return _handler("replacement_quantity")(order)


def close_reduce_only(order: Order) -> bool:
    """Whether a close order may go reduce-only: nothing the account holds nets against it."""
    return _handler("close_reduce_only")(order)


def order_alert(order: Order, *, kind: str, critical: bool, message: str) -> Any:
    return _handler("order_alert")(order, kind=kind, critical=critical, message=message)


def account_alert(*, kind: str, subject: str, critical: bool, message: str) -> Any:
    return _handler("account_alert")(kind=kind, subject=subject, critical=critical,
                                     message=message)


def account_alert_resolve(*, kind: str, subject: str) -> int:
    return _handler("account_alert_resolve")(kind=kind, subject=subject)


def account_alert_subjects(*, kind: str) -> set[str]:
    return _handler("account_alert_subjects")(kind=kind)


def close_action_run(action: Action, drive: Callable[[Order], Order]) -> None:
    _handler("close_action_run")(action, drive)


def close_action_settle(order: Order) -> Action | None:
    return _handler("close_action_settle")(order)


def markets_in_use() -> list[tuple[ExchangeAccount, str, str]]:
    return _handler("markets_in_use")()


def pretrade_gate(order: Order) -> Write | None:
    """``OrderRefused`` when the order may not be recorded (``execution.gates``); else the
    gate's write that counts it in (``None``: nothing to count), for the order's insert."""
    return _handler("pretrade_gate")(order)


def order_refusal_store(refused: OrderRefused) -> None:
    _handler("order_refusal_store")(refused)
