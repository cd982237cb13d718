"""Platform-wide writes: the trading halt that the API, tasks and admin respect."""

from __future__ import annotations

from functools import cache

from django.db import connection, transaction
from django.utils import timezone

from tradingsite.errors import TradingHalted
from tradingsite.live import broadcast
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


@transaction.atomic
def trading_halt(*, reason: str, actor: str) -> PlatformState:
    """Stop new entries. Closing positions and the risk/timeout checks go on."""
    state = platform_state()
    PlatformState.objects.filter(id=state.id).update(
        trading_halted=True, halt_reason=reason[:255], halted_at=timezone.now(),
        halted_by=actor[:150], updated_at=timezone.now())
    state.refresh_from_db()
    broadcast("trading.halted", halt_payload(state))
    return state


@transaction.atomic
def trading_resume(*, actor: str) -> PlatformState:
    state = platform_state()
    PlatformState.objects.filter(id=state.id).update(
        trading_halted=False, halt_reason="", halted_at=None, halted_by=actor[:150],
        updated_at=timezone.now())
    state.refresh_from_db()
    broadcast("trading.resumed", halt_payload(state))
    return state


def shutdown_request(*, actor: str) -> PlatformState:
    """Ask running instances to shut down gracefully (they poll this flag)."""
    state = platform_state()
    PlatformState.objects.filter(id=state.id).update(shutdown_requested_at=timezone.now())
    state.refresh_from_db()
    return state


def shutdown_request_clear() -> None:
    PlatformState.objects.filter(id=PlatformState.SINGLETON_ID).update(shutdown_requested_at=None)
