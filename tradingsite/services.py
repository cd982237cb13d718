"""Platform-wide writes: the trading halt that the API, tasks and admin respect.

The halt is the platform's trading state (``guard``: ACTIVE, REDUCING, HALTED per
scope): ``trading_halt`` and ``trading_resume`` hand it to the writer the guard
registers (``register_global_state_writer``), which also keeps ``PlatformState``'s halt
fields — what the pipeline, shutdown, recovery and the halt API read — in step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from tradingsite.audit import audit_record
from tradingsite.errors import TradingHalted
from tradingsite.models import PlatformState


def platform_state() -> PlatformState:
    state, _ = PlatformState.objects.get_or_create(id=PlatformState.SINGLETON_ID)
    return state


def is_trading_halted() -> bool:
    return PlatformState.objects.filter(id=PlatformState.SINGLETON_ID,
                                        trading_halted=True).exists()


@cache
def trading_halted_sql() -> str:
    """An SQL query that finds a row while trading is halted.

    Guards a write in the same statement (``tradingsite.sql``), so an entry
    recorded or claimed after the halt committed is refused.
    """
    meta = PlatformState._meta
    qn = connection.ops.quote_name
    return (f"SELECT 1 FROM {qn(meta.db_table)} WHERE {qn(meta.pk.column)} = "
            f"{int(PlatformState.SINGLETON_ID)} AND {qn(meta.get_field('trading_halted').column)}")


def ensure_trading_allowed() -> None:
    """Refuse a new entry while trading is halted (closes are always allowed)."""
    state = PlatformState.objects.filter(id=PlatformState.SINGLETON_ID).first()
    if state is not None and state.trading_halted:
        raise TradingHalted(f"trading is halted: {state.halt_reason or 'no reason given'} "
                            f"(by {state.halted_by or 'unknown'})")


def halt_payload(state: PlatformState) -> dict:
    return {"trading_halted": state.trading_halted, "reason": state.halt_reason,
            "halted_at": state.halted_at, "halted_by": state.halted_by}


GlobalStateWriter = Callable[..., PlatformState]  # (*, state, reason, actor) -> PlatformState
_global_state_writers: list[GlobalStateWriter] = []


def register_global_state_writer(writer: GlobalStateWriter) -> None:
    """The guard's writer of the platform's trading state (one per process)."""
    _global_state_writers[:] = [writer]


def _global_state_writer() -> GlobalStateWriter:
    if not _global_state_writers:
        raise ImproperlyConfigured("no trading-state writer registered: is 'guard' in "
                                   "INSTALLED_APPS?")
    return _global_state_writers[0]


def trading_halt(*, reason: str, actor: str) -> PlatformState:
    """Stop new orders: the platform's state becomes HALTED. Closing positions and the
    risk/timeout checks go on."""
    return _global_state_writer()(state="HALTED", reason=reason, actor=actor)


def trading_resume(*, actor: str) -> PlatformState:
    """The platform's state becomes ACTIVE again (a tripped platform needs a re-arm)."""
    return _global_state_writer()(state="ACTIVE", reason="", actor=actor)


def shutdown_request(*, actor: str) -> PlatformState:
    """Ask running instances to shut down gracefully (they poll this flag)."""
    state = platform_state()
    with transaction.atomic():
        PlatformState.objects.filter(id=state.id).update(shutdown_requested_at=timezone.now())
        state.refresh_from_db()
        audit_record(actor=actor, action="platform.shutdown_request", target=state,
                     after={"shutdown_requested_at": state.shutdown_requested_at})
    return state


def shutdown_request_clear() -> None:
    PlatformState.objects.filter(id=PlatformState.SINGLETON_ID).update(shutdown_requested_at=None)
