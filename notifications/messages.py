"""Messages a trader can act on: what happened, which position, the numbers, a link.

A notification stores the facts of its event (``context``); the delivery pass renders
it here, adding what the position looks like right then (price, unrealised PnL,
health, time to timeout, an open close) from a constant number of queries per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from execution.models import Action, ActionKind, ActionState
from lifecycle.models import Position, PositionSide
from lifecycle.selectors import limits_of
from lifecycle.timeouts import HoldingLimits
from notifications.models import Notification

LABELS = {
    "danger_warning": "Health warning",
    "danger_critical": "Health critical",
    "slippage": "Emergency close sent despite slippage",
    "order_unknown": "Order unknown to the exchange",
    "order_reappeared": "Order reappeared on the exchange",
    "fill_unapplied": "Exit fill not applied",
    "position_mismatch": "Positions differ from the exchange",
    "untracked_position": "Untracked position on the exchange",
    "guard_tripped": "Portfolio guard tripped",
    "invariant_violated": "A promise is broken",
    "invariant_unchecked": "Promises could not be checked",
    "position_warning": "Holding-time warning",
    "position_timeout": "Position timed out",
    "close_requested": "Close requested",
    "close_failed": "Close failed",
    "position_closed": "Position closed",
    "order_rejected": "Order rejected",
    "order_failed": "Order failed",
    "order_expired": "Order expired",
    "order_cancelled": "Order cancelled",
    "platform_started": "Platform started",
    "platform_stopping": "Platform stopping",
    "digest": "Digest",
    "test": "Test message",
}


def label(kind: str) -> str:
    if kind in LABELS:
        return LABELS[kind]
    if kind.startswith("collapse_"):
        return f"{kind.removeprefix('collapse_').replace('_', ' ').capitalize()} component " \
               "collapsed"
    return kind.replace("_", " ").capitalize()


def number(value: Any) -> str:
    """``Decimal('0.51230000')`` → ``0.5123``; never an exponent; ``?`` for nothing."""
    if value is None or value == "":
        return "?"
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not d.is_finite():
        return str(d)
    text = f"{d.normalize():f}"
    return "0" if text in ("-0", "") else text


def signed(value: Any, places: int = 2) -> str:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return "?"
    return f"{d:+,.{places}f}"


def clock(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    local = moment.astimezone(ZoneInfo(settings.TIME_ZONE))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float) -> str:
    """``45 s``, ``17 min``, ``3 h 20 min``, ``2 d 4 h``: as precise as a trader needs."""
    if seconds < 120:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def position_link(position_id: int) -> str:
    """The position page: absolute with SITE_URL, else the path alone."""
    return f"{settings.SITE_URL}/positions/{position_id}/"


@dataclass(frozen=True)
class PositionFacts:
    """A position as a trader needs to see it in a message, at one moment."""

    position: Position
    limits: HoldingLimits
    open_close: Action | None
    now: datetime

    @property
    def minutes_open(self) -> float:
        return self.position.holding_seconds(self.now) / 60

    def headline(self) -> str:
        p = self.position
        return (f"Position #{p.pk} {p.symbol} {p.side} {number(p.quantity)} @ "
                f"{number(p.entry_price)} · strategy {p.strategy.name} · account "
                f"{p.strategy.account.name}")

    def numbers(self) -> str:
        p = self.position
        parts = []
        if p.last_price is not None:
            pnl = p.unrealised_pnl()
            direction = 1 if p.side == PositionSide.LONG else -1
            percent = (p.last_price / p.entry_price - 1) * 100 * direction
            parts.append(f"price {number(p.last_price)} at {clock(p.last_price_at)}")
            if p.quantity:
                parts.append(f"unrealised PnL {signed(pnl)} ({signed(percent)} %, before fees)")
        if p.health_score is not None:
            parts.append(f"health {number(p.health_score)}"
                         + (f" ({p.danger_level})" if p.danger_level else ""))
        parts.append(f"state {p.state}")
        if p.is_active:
            left = self.limits.max_minutes - self.minutes_open
            parts.append(f"held {duration(self.minutes_open * 60)}, "
                         + (f"times out in {duration(left * 60)}" if left > 0 else
                            f"{duration(-left * 60)} past its limit")
                         + f" (limit {self.limits.max_minutes} min)")
        text = " · ".join(parts)
        return text[:1].upper() + text[1:]

    def close_line(self) -> str:
        action = self.open_close
        if action is None:
            return ""
        what = "Emergency close" if action.kind == ActionKind.EMERGENCY_CLOSE else "Close"
        return (f"{what} queued ({action.reason or 'manual'}, by {action.requested_by}, "
                f"action #{action.pk}, {action.state}).")


def position_facts(position_ids: set[int], now: datetime | None = None) -> dict[int, PositionFacts]:
    """Facts of these positions in three queries, whatever their number."""
    if not position_ids:
        return {}
    now = now or timezone.now()
    positions = list(Position.objects.filter(pk__in=position_ids).select_related(
        "strategy__account"))
    limits: dict[int, HoldingLimits] = {}
    for position in positions:
        if position.strategy_id not in limits:
            limits[position.strategy_id] = limits_of(position.strategy)
    closes: dict[int, Action] = {}
    for action in Action.objects.filter(position_id__in=position_ids,
                                        kind__in=ActionKind.closing(),
                                        state__in=ActionState.open()).order_by("created_at"):
        closes.setdefault(action.position_id, action)
    return {p.pk: PositionFacts(p, limits[p.strategy_id], closes.get(p.pk), now)
            for p in positions}


# --- what happened, per kind ------------------------------------------------------------------

def _position_warning(c: dict, f: PositionFacts | None) -> str:
    if f is None:
        return "A position passed its holding-time warning threshold."
    left = f.limits.max_minutes - f.minutes_open
    return (f"Held {duration(f.minutes_open * 60)}: past the {f.limits.warning_minutes}-min "
            f"warning threshold; it times out at {f.limits.max_minutes} min "
            f"({duration(max(left, 0) * 60)} left).")


def _position_timeout(c: dict, f: PositionFacts | None) -> str:
    if f is None:
        return "A position reached its maximum holding time."
    text = (f"Held {duration(f.minutes_open * 60)}: the {f.limits.max_minutes}-min holding "
            "limit is reached.")
    if not f.limits.automatic_timeout:
        text += (" Automatic timeout is off for this strategy: close it yourself (admin, API "
                 "or manage.py close_position).")
    elif f.open_close is None and f.position.is_active:
        text += " No close is queued yet: the timeout pass queues one within 15 s."
    return text


def _close_requested(c: dict, f: PositionFacts | None) -> str:
    what = "Emergency close" if c.get("kind") == ActionKind.EMERGENCY_CLOSE else \
        str(c.get("kind", "close")).replace("_", " ").capitalize()
    note = f": {c['note']}" if c.get("note") else ""
    return f"{what} requested by {c.get('actor', '?')} (reason {c.get('reason', '?')}){note}."


def _close_failed(c: dict, f: PositionFacts | None) -> str:
    state = f.position.state if f else "?"
    return (f"The close failed: {c.get('reason', '?')}. The position is {state} again and "
            "still held.")


def _position_closed(c: dict, f: PositionFacts | None) -> str:
    return (f"Closed ({c.get('exit_reason', '?')}) at {number(c.get('exit_price'))}: realised "
            f"PnL {signed(c.get('pnl'))} ({signed(c.get('pnl_percent'))} %) net of "
            f"{number(c.get('fees'))} fees, held {duration(float(c.get('holding_seconds') or 0))}.")


def _order_ended(c: dict, f: PositionFacts | None) -> str:
    filled = c.get("filled_quantity")
    partly = (f", {number(filled)} of {number(c.get('quantity'))} filled"
              if filled not in (None, "0") and Decimal(str(filled)) > 0 else "")
    error = c.get("error") or "no reason given"
    still = " The position is still held." if c.get("purpose") != "entry" and f else ""
    return (f"{str(c.get('purpose', '')).replace('_', ' ').capitalize()} order "
            f"{c.get('client_order_id', '?')} ({c.get('side', '?')} {number(c.get('quantity'))} "
            f"{c.get('symbol', '?')} on {c.get('account', '?')}) ended {c.get('status', '?')}"
            f"{partly}: {error}.{still}")


def _platform_started(c: dict, f: PositionFacts | None) -> str:
    return (f"{c.get('mode', '?')} on {c.get('host', '?')} (pid {c.get('pid', '?')}) is up"
            + (f": {c['details']}" if c.get("details") else "") + ".")


def _platform_stopping(c: dict, f: PositionFacts | None) -> str:
    if c.get("clean", True):
        outcome = "the shutdown sequence finished in time"
    else:
        outcome = ("the shutdown sequence did NOT finish: check the snapshot, open orders "
                   "and positions before trading again")
    return (f"{c.get('mode', '?')} on {c.get('host', '?')} (pid {c.get('pid', '?')}) is "
            f"stopping ({c.get('reason', '?')}): {outcome}. Positions are not supervised by "
            "this process any more.")


HEADLINES = {
    "position_warning": _position_warning,
    "position_timeout": _position_timeout,
    "close_requested": _close_requested,
    "close_failed": _close_failed,
    "position_closed": _position_closed,
    "order_rejected": _order_ended,
    "order_failed": _order_ended,
    "order_expired": _order_ended,
    "order_cancelled": _order_ended,
    "platform_started": _platform_started,
    "platform_stopping": _platform_stopping,
}


def render(notification: Notification, facts: PositionFacts | None) -> tuple[str, str, str]:
    """``(title, body, link)`` of a notification."""
    context = notification.context or {}
    head = HEADLINES.get(notification.kind)
    what = head(context, facts) if head else str(context.get("message") or label(
        notification.kind))
    title = f"{notification.severity}: {label(notification.kind)}"
    lines = [what]
    link = ""
    if facts is not None:
        p = facts.position
        title += f" · {p.symbol} {p.side} #{p.pk}"
        lines += [facts.headline(), facts.numbers()]
        if notification.kind not in ("close_requested", "position_closed"):
            lines.append(facts.close_line())
        link = position_link(p.pk)
    elif notification.position_id:
        link = position_link(notification.position_id)
    if link:
        lines.append(link)
    return title[:250], "\n".join(line for line in lines if line), link
