"""Positions against the exchange's book: fresh marks, positions opened or closed elsewhere.

Execution's stream owner announces what the exchange says (``execution.signals``);
this module is what the position layer does with it:

- **Marks.** ``positions_mark`` writes each symbol's fresh mark on every held
  position of the account in one statement (``last_price``, ``last_price_at``, and
  the best and worst prices since open), pushes ``positions.marked`` live and tells
  the layers above (``positions_marked``: the risk monitor recomputes the danger).
- **Positions opened elsewhere.** ``book_reconcile`` compares the account's book
  with the positions it tracks (net quantity per symbol). An exchange position the
  platform does not track raises an ``untracked_position`` alert and, with the
  account's ``adoptExternalPositions`` on, becomes a supervised position on the
  account's supervision strategy (``Strategy.supervises_account``), opened at the
  exchange's time when it says, else at discovery: holding limits and health apply
  from then on.
- **Positions closed elsewhere.** A tracked position the exchange shows flat is
  closed with exit reason ``external``; its exit is taken from the exchange's trades
  in the closing direction that are not the platform's own orders (the last mark
  when the exchange lists none).

Symbols in flux are left for the next comparison: one with an active order of the
account, an order written since the book was read, a position opened since, a
position being closed or marked for attention. The book is read after the orders
were reconciled, and the database after the book, so a fill racing the read never
looks like a position opened or closed elsewhere.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Case, DecimalField, Q, Value, When
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from execution.alerts import (
    EXTERNAL_CLOSE_ALERT,
    POSITION_MISMATCH_ALERT,
    UNTRACKED_POSITION_ALERT,
    raise_account_alert,
    resolve_account_alert,
)
from execution.exchanges.base import BUY, SELL, Exchange, ExchangePosition, TradeFill
from execution.exchanges.errors import ExchangeError
from execution.models import ExchangeAccount, Order, OrderStatus
from lifecycle.models import Position, PositionSide, PositionSource, PositionState, Strategy
from lifecycle.services import position_apply_close_fill, position_begin_close, position_open
from lifecycle.signals import positions_marked
from tradingsite.domain import MONEY, CloseReason
from tradingsite.errors import InvalidStateTransition
from tradingsite.live import send_now

log = logging.getLogger(__name__)

RECONCILE_ACTOR = "reconcile"
PRICE_PLACES = Decimal("1e-10")


def _plain(value: Decimal) -> str:
    return f"{Decimal(value).normalize():f}"


def _strategy_ids(account_id: int) -> list[int]:
    return list(Strategy.objects.filter(account_id=account_id).values_list("pk", flat=True))


# --- marks ----------------------------------------------------------------------------------

def held_symbols(*, account_id: int) -> set[str]:
    """The symbols of the positions the account holds (they need marks)."""
    return set(Position.objects.filter(strategy_id__in=_strategy_ids(account_id),
                                       state__in=PositionState.active())
               .values_list("symbol", flat=True).distinct().order_by())


def positions_mark(*, account_id: int, marks: dict[str, Decimal], at: datetime) -> int:
    """Write fresh marks on every held position of the account; returns how many rows.

    One UPDATE for all symbols; a position whose price is newer than ``at`` (a fill
    written meanwhile) keeps it.
    """
    strategy_ids = _strategy_ids(account_id)
    if not marks or not strategy_ids:
        return 0
    money = DecimalField(**MONEY)
    price = Case(*[When(symbol=symbol, then=Value(Decimal(mark), output_field=money))
                   for symbol, mark in marks.items()], output_field=money)
    updated = Position.objects.filter(
        Q(last_price_at__isnull=True) | Q(last_price_at__lte=at),
        strategy_id__in=strategy_ids, state__in=PositionState.active(),
        symbol__in=list(marks)).update(
        last_price=price, last_price_at=at, peak_price=Greatest("peak_price", price),
        trough_price=Least("trough_price", price))
    name = ExchangeAccount.objects.filter(pk=account_id).values_list("name", flat=True).first()
    send_now("positions.marked", {"account": account_id, "account_name": name, "at": at,
                                  "marks": {symbol: str(mark) for symbol, mark
                                            in sorted(marks.items())}})
    if updated:
        positions_marked.send(sender=Position, account_id=account_id, symbols=sorted(marks),
                              at=at)
    return updated


# --- the exchange's book against the tracked positions ----------------------------------------------

def _busy_symbols(account: ExchangeAccount, read_at: datetime) -> set[str]:
    """Symbols whose orders are in flight or were written since the book was read."""
    return set(Order.objects.filter(Q(status__in=OrderStatus.active()) | Q(updated_at__gte=read_at),
                                    account=account).values_list("symbol", flat=True))


def _supervision_strategy(account: ExchangeAccount) -> Strategy | None:
    return Strategy.objects.filter(account=account, supervises_account=True).first()


def book_reconcile(*, account: ExchangeAccount, positions: list[ExchangePosition],
                   read_at: datetime, exchange: Exchange) -> dict[str, Any]:
    """Compare the account's book with its tracked positions and act (see the module doc).

    Returns what it found and did, per symbol, for the reconcile report.
    """
    config = account.sync_settings()
    on_exchange: dict[str, ExchangePosition] = {}
    net_exchange: dict[str, Decimal] = defaultdict(Decimal)
    for position in positions:
        if position.quantity:
            net_exchange[position.symbol] += position.signed_quantity
            on_exchange[position.symbol] = position
    tracked = list(Position.objects.filter(strategy__account=account,
                                           state__in=PositionState.active())
                   .select_related("strategy").order_by("opened_at", "pk"))
    net_tracked: dict[str, Decimal] = defaultdict(Decimal)
    by_symbol: dict[str, list[Position]] = defaultdict(list)
    for position in tracked:
        sign = 1 if position.side == PositionSide.LONG else -1
        net_tracked[position.symbol] += position.quantity * sign
        by_symbol[position.symbol].append(position)
    busy = _busy_symbols(account, read_at)
    found: dict[str, str] = {}
    for symbol in sorted(set(net_exchange) | set(net_tracked)):
        held, ours = net_exchange.get(symbol, Decimal(0)), net_tracked.get(symbol, Decimal(0))
        subject = f"{account.name} {symbol}"
        if held == ours:
            continue
        in_flux = symbol in busy or any(
            p.created_at >= read_at or p.state == PositionState.CLOSING or p.attention
            for p in by_symbol.get(symbol, []))
        if in_flux:
            found[symbol] = "in flux: compared next time"
        elif ours == 0:
            found[symbol] = _untracked(account, on_exchange[symbol], read_at, subject,
                                       adopt=config.adopt_external_positions)
        elif held == 0:
            found[symbol] = _closed_elsewhere(account, by_symbol[symbol], exchange, read_at,
                                              subject)
        else:
            found[symbol] = f"differs: tracked {_plain(ours)}, exchange {_plain(held)}"
            raise_account_alert(kind=POSITION_MISMATCH_ALERT, subject=subject, message=(
                f"{subject}: tracked net {_plain(ours)}, exchange net {_plain(held)} "
                "(long > 0): check before closing"))
    for symbol in _untracked_alert_symbols(account) - set(net_exchange):
        resolve_account_alert(kind=UNTRACKED_POSITION_ALERT, subject=f"{account.name} {symbol}")
    return {"differences": found} if found else {}


def _untracked_alert_symbols(account: ExchangeAccount) -> set[str]:
    from execution.alerts import open_account_alert_subjects

    prefix = f"{account.name} "
    return {subject[len(prefix):] for subject in open_account_alert_subjects(
        UNTRACKED_POSITION_ALERT) if subject.startswith(prefix)}


def _untracked(account: ExchangeAccount, held: ExchangePosition, read_at: datetime,
               subject: str, *, adopt: bool) -> str:
    """An exchange position the platform does not track: alert, and adopt when allowed."""
    side = PositionSide.LONG if held.side == "long" else PositionSide.SHORT
    what = f"{side} {_plain(held.quantity)} {held.symbol}"
    entry = held.entry_price or held.mark_price
    strategy = _supervision_strategy(account) if adopt else None
    if strategy is None or not entry:
        why = ("adoptExternalPositions is off" if not adopt else
               "no supervision strategy on the account" if strategy is None
               else "the exchange gives no entry price")
        raise_account_alert(kind=UNTRACKED_POSITION_ALERT, subject=subject, message=(
            f"{account.name}: {what} on the exchange is not supervised ({why}): no holding "
            "limit or health applies to it"))
        return f"untracked: {what}, not adopted ({why})"
    opened_at = min(held.opened_at or read_at, timezone.now())
    key = f"adopt:{account.pk}:{held.symbol}:{held.side}:{opened_at.isoformat()}"
    position = position_open(
        strategy=strategy, symbol=held.symbol, side=side, quantity=held.quantity,
        entry_price=entry, opened_at=opened_at, source=PositionSource.RECONCILE,
        external_ref=f"exchange:{held.symbol}:{held.side}:{int(opened_at.timestamp() * 1000)}",
        actor=RECONCILE_ACTOR, fill_key=key)
    raise_account_alert(kind=UNTRACKED_POSITION_ALERT, subject=subject, critical=False,
                        message=f"{account.name}: {what} opened outside the platform: adopted "
                                f"as position #{position.pk} on strategy {strategy.name}, "
                                f"opened {opened_at:%Y-%m-%d %H:%M:%S} UTC")
    log.warning("account %s: untracked %s adopted as position %s", account.name, what,
                position.pk)
    return f"untracked: {what}, adopted as position #{position.pk}"


def _closed_elsewhere(account: ExchangeAccount, positions: list[Position], exchange: Exchange,
                      read_at: datetime, subject: str) -> str:
    """Tracked positions the exchange shows flat: closed ``external`` at the exchange's exit."""
    closed = []
    try:
        listed = exchange.fetch_my_trades(positions[0].symbol, since=positions[0].opened_at)
    except (ExchangeError, NotImplementedError) as exc:
        log.warning("account %s: trades of %s not read (%s): exits at the last mark",
                    account.name, positions[0].symbol, exc)
        listed = []
    own = set(Order.objects.filter(account=account, client_order_id__in=[
        t.client_order_id for t in listed if t.client_order_id]).values_list(
        "client_order_id", flat=True))
    left = {t.id: t.amount for t in listed if t.client_order_id not in own}
    trades = [t for t in listed if t.id in left]
    for position in positions:
        if position.state not in PositionState.holding():
            continue
        exit_side = SELL if position.side == PositionSide.LONG else BUY
        mine = [t for t in trades if t.side == exit_side and left[t.id] > 0 and (
            t.timestamp is None or t.timestamp >= position.opened_at)]
        price, fee, at, used = _exit_from_trades(mine, position.quantity, left)
        source = f"{len(used)} exchange trade(s)" if used else "the last mark (no trade listed)"
        price = price or position.last_price or position.entry_price
        try:
            with transaction.atomic():
                position_begin_close(position, reason=CloseReason.EXTERNAL, actor=RECONCILE_ACTOR)
                position_apply_close_fill(
                    position, fill_key=f"external:{position.pk}", quantity=position.quantity,
                    price=price.quantize(PRICE_PLACES), fee=fee,
                    filled_at=max(at or read_at, position.opened_at), actor=RECONCILE_ACTOR)
        except (InvalidStateTransition, ValueError) as exc:  # moved on meanwhile
            log.warning("position %s: not closed as external: %s", position.pk, exc)
            continue
        closed.append(f"#{position.pk} at {_plain(price.quantize(PRICE_PLACES))} "
                      f"(from {source})")
    if closed:
        raise_account_alert(kind=EXTERNAL_CLOSE_ALERT, subject=subject, critical=False,
                            message=f"{subject}: flat on the exchange; closed outside the "
                                    f"platform: " + ", ".join(closed))
    return "closed elsewhere: " + (", ".join(closed) or "nothing closed")


def _exit_from_trades(trades: list[TradeFill], quantity: Decimal, left: dict[str, Decimal]
                      ) -> tuple[Decimal | None, Decimal, datetime | None, list[TradeFill]]:
    """Average price, fees and time of the earliest trades that make up ``quantity``;
    ``left`` (trade id → quantity not yet allocated) is drawn down, so a trade that closed
    several positions is shared between them."""
    wanted, value, fee, used, at = quantity, Decimal(0), Decimal(0), [], None
    for trade in trades:
        if wanted <= 0:
            break
        take = min(left[trade.id], wanted)
        if take <= 0:
            continue
        value += take * trade.price
        fee += trade.fee * take / trade.amount if trade.amount else Decimal(0)
        left[trade.id] -= take
        wanted -= take
        used.append(trade)
        at = trade.timestamp or at
    filled = quantity - wanted
    if filled <= 0:
        return None, Decimal(0), None, []
    return value / filled, fee.quantize(PRICE_PLACES), at, used
