"""The platform's promises as code: one function per promise, each returning its violations.

1. ``positions_closed_in_time``: no position is held past its max holding time (plus
   ``grace``) without a close in flight — an open close action, an active exit order,
   or a re-queue the close backoff has scheduled.
2. ``client_ids_once``: each client order id is at most once on the exchange.
3. ``active_orders_known``: every non-final order is known to the exchange, or in doubt
   for less than its ``inDoubtGraceSeconds`` (never sent: younger than its order
   timeout); and every order the exchange still has open is active in the database.
4. ``fills_match``: per order, the quantity filled in the database equals the exchange's;
   the exchange holds no order the database does not.
5. ``net_positions_match``: per account and symbol, the net quantity of the positions
   held in the database equals the exchange's.
6. ``trips_held``: a scope the portfolio guard tripped stays at least as strict as the
   trip set it (``REDUCING`` or ``HALTED``) until an operator re-arms it, and a re-arm
   names the operator and the reason — never by itself.

The database is read directly, the exchange through its adapter (``fetch_orders``,
``fetch_positions`` and, before an order counts as missing, the targeted lookup by
exchange and client order id). What is still moving is given ``grace`` (default 60 s:
beat intervals and queue lag): an order a worker wrote within it, a fill on its way.
``grace=timedelta(0)`` asks for a settled platform. Each violation carries its evidence
(ids, numbers, times) in a form that stays the same while the facts do, so an alert
built from it changes only when they change.

Used after every integration scenario (``conftest.py``), by the randomized fault
harness (``tests/faults``) and every minute by the beat task
``operations.tasks.check_invariants`` (``manage.py check_invariants`` on demand).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from execution.exchanges import exchange_for
from execution.exchanges.base import Exchange, OrderSnapshot
from execution.exchanges.errors import ExchangeError
from execution.models import ActionKind, ActionState, ExchangeAccount, Order, OrderPurpose
from execution.models import OrderStatus as S
from execution.pipeline import order_config, order_locate, plain
from guard.models import GuardTrip, TradingState
from lifecycle.models import Position, PositionState
from lifecycle.selectors import limits_of, strategy_limits
from lifecycle.timeouts import close_retry_delay
from operations.recovery import PositionCheck, compare_positions, fresh_paper_book
from risk.models import AlertSeverity, RiskAlert
from risk.services import alert_raise, alerts_resolve

POSITIONS_CLOSED_IN_TIME = "positions_closed_in_time"
CLIENT_IDS_ONCE = "client_ids_once"
ACTIVE_ORDERS_KNOWN = "active_orders_known"
FILLS_MATCH = "fills_match"
NET_POSITIONS_MATCH = "net_positions_match"
TRIPS_HELD = "trips_held"
INVARIANTS = (POSITIONS_CLOSED_IN_TIME, CLIENT_IDS_ONCE, ACTIVE_ORDERS_KNOWN, FILLS_MATCH,
              NET_POSITIONS_MATCH, TRIPS_HELD)
# Not a promise broken: an exchange that could not be read, so its promises are unchecked.
EXCHANGE_UNREADABLE = "exchange_unreadable"

GRACE = timedelta(seconds=60)
# Orders created this recently are compared with the exchange's listing.
WINDOW = timedelta(hours=24)
# Alerts: one open alert per position (and one for violations without a position),
# raised again only when its evidence changes or after REALERT.
INVARIANT_ALERT = "invariant_violated"
UNCHECKED_ALERT = "invariant_unchecked"
REALERT = timedelta(hours=1)
ALERT_LINES = 20
# The beat task reads each exchange with this request timeout: a hung exchange costs the
# check seconds (and is reported unchecked), not the account's full request timeout.
CHECK_TIMEOUT_MS = 3000

ExchangeOf = Callable[[ExchangeAccount], Exchange]


@dataclass(frozen=True)
class Violation:
    """One broken promise: what, about which object, and the facts that show it."""

    invariant: str
    subject: str
    message: str
    evidence: dict[str, Any]
    position_id: int | None = None

    def __str__(self) -> str:
        return f"{self.invariant}: {self.subject}: {self.message}"


@dataclass
class AccountOnExchange:
    """What one account's exchange says, read once per check."""

    account: ExchangeAccount
    since: datetime
    orders: dict[str, list[OrderSnapshot]] = field(default_factory=dict)  # per symbol
    positions: list[PositionCheck] = field(default_factory=list)
    exchange: Exchange | None = None
    unreadable: str = ""  # why it could not be read (its promises are not checked)
    failed_lookups: list[str] = field(default_factory=list)  # targeted lookups unanswered

    @property
    def read(self) -> bool:
        return self.exchange is not None and not self.unreadable


def _text(value: Any) -> str | None:
    """Evidence values: decimals plain, times ISO 8601, ``None`` kept."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _evidence(**values: Any) -> dict[str, Any]:
    return {name: value if isinstance(value, int | bool | list) else _text(value)
            for name, value in values.items()}


# --- reading the exchanges ------------------------------------------------------------

def _accounts_in_play(since: datetime) -> list[ExchangeAccount]:
    """Enabled accounts holding positions, active orders or orders created since ``since``."""
    ids = set(Position.objects.filter(state__in=PositionState.active()).values_list(
        "strategy__account_id", flat=True))
    ids |= set(Order.objects.filter(Q(status__in=S.active()) | Q(created_at__gte=since))
               .values_list("account_id", flat=True))
    return list(ExchangeAccount.objects.filter(pk__in=ids, enabled=True).order_by("name"))


def _symbols(account: ExchangeAccount, since: datetime) -> list[str]:
    symbols = set(Order.objects.filter(Q(status__in=S.active()) | Q(created_at__gte=since),
                                       account=account).values_list("symbol", flat=True))
    symbols |= set(Position.objects.filter(strategy__account=account,
                                           state__in=PositionState.active())
                   .values_list("symbol", flat=True))
    return sorted(symbols)


def read_exchanges(*, now: datetime | None = None, since: datetime | None = None,
                   exchange_of: ExchangeOf | None = None) -> list[AccountOnExchange]:
    """Every account in play as its exchange lists it: orders per symbol, net positions.

    An exchange that cannot be read, or a paper book that restarted empty with this
    process (it holds nothing to compare), is marked ``unreadable`` with the reason.
    """
    now = now or timezone.now()
    since = since if since is not None else now - WINDOW
    views = []
    for account in _accounts_in_play(since):
        view = AccountOnExchange(account, since)
        views.append(view)
        try:
            view.exchange = (exchange_of or exchange_for)(account)
            if fresh_paper_book(view.exchange):
                view.unreadable = "the paper book restarted empty with this process"
                continue
            for symbol in _symbols(account, since):
                view.orders[symbol] = view.exchange.fetch_orders(symbol, since=since)
            view.positions = compare_positions(account, view.exchange)
        except ExchangeError as exc:
            view.unreadable = f"{type(exc).__name__}: {exc}"
    return views


def unreadable(views: Iterable[AccountOnExchange]) -> list[Violation]:
    """Accounts, and orders, whose exchange did not answer: unchecked, not broken."""
    found = []
    for view in views:
        for reason in ([view.unreadable] if view.unreadable else []) + view.failed_lookups:
            found.append(Violation(EXCHANGE_UNREADABLE, f"account {view.account.name}",
                                   f"not checked: {reason}",
                                   _evidence(account=view.account.name, reason=reason)))
    return found


def _listed(view: AccountOnExchange) -> tuple[dict[str, OrderSnapshot], dict[str, OrderSnapshot]]:
    """The account's listed orders by client order id and by exchange id."""
    by_client, by_id = {}, {}
    for snapshots in view.orders.values():
        for snapshot in snapshots:
            by_id[snapshot.id] = snapshot
            if snapshot.client_order_id:
                by_client[snapshot.client_order_id] = snapshot
    return by_client, by_id


def _read(views: list[AccountOnExchange] | None, now: datetime,
          exchange_of: ExchangeOf | None) -> list[AccountOnExchange]:
    return views if views is not None else read_exchanges(now=now, exchange_of=exchange_of)


# --- 1. no position past its limit without a close in flight -----------------------------

def positions_closed_in_time(*, now: datetime | None = None, grace: timedelta = GRACE
                             ) -> list[Violation]:
    """Held past ``maxHoldingTimeMinutes`` + ``grace`` with no close in flight.

    In flight: an open close action, an active exit order, or a close that ended less
    than its re-queue delay (1, 2, 4, 8, then 15 min) plus ``grace`` ago. Strategies
    without ``enableAutomaticTimeout`` promise no close and are left out.
    """
    now = now or timezone.now()
    limits = strategy_limits()
    closing = Q(actions__kind__in=ActionKind.closing())
    positions = (Position.objects.filter(state__in=PositionState.active())
                 .select_related("strategy")
                 .annotate(open_closes=Count("actions", filter=closing & Q(
                               actions__state__in=ActionState.open()), distinct=True),
                           closes=Count("actions", filter=closing, distinct=True),
                           last_close_ended=Max(Coalesce("actions__finished_at",
                                                         "actions__updated_at"),
                                                filter=closing))
                 .order_by("pk"))
    exit_orders = set(Order.objects.filter(status__in=S.active(), position__isnull=False)
                      .exclude(purpose=OrderPurpose.ENTRY).values_list("position_id", flat=True))
    violations = []
    for position in positions:
        held = limits.get(position.strategy_id) or limits_of(position.strategy)
        if not held.automatic_timeout:
            continue
        due = position.opened_at + held.timeout_after
        if now < due + grace or position.open_closes or position.pk in exit_orders:
            continue
        retry_at = None
        if position.closes:
            retry_at = position.last_close_ended + close_retry_delay(position.closes)
            if now < retry_at + grace:
                continue
        why = f"held past its limit of {held.max_minutes} min (due {due:%Y-%m-%d %H:%M:%S})"
        why += f", no close in flight ({position.closes} closes so far"
        why += f", the last ended {position.last_close_ended:%H:%M:%S})" if position.closes \
            else ")"
        if position.attention:
            why += f"; marked for attention: {position.attention}"
        violations.append(Violation(
            POSITIONS_CLOSED_IN_TIME, f"position {position.pk}", why, _evidence(
                position=position.pk, strategy=position.strategy.name, symbol=position.symbol,
                state=position.state, quantity=position.quantity, opened_at=position.opened_at,
                max_holding_minutes=held.max_minutes, due_at=due, closes=position.closes,
                last_close_ended_at=position.last_close_ended, retry_due_at=retry_at,
                attention=position.attention or None),
            position_id=position.pk))
    return violations


# --- 2. each client order id at most once on the exchange ---------------------------------

def client_ids_once(*, views: list[AccountOnExchange] | None = None,
                    now: datetime | None = None,
                    exchange_of: ExchangeOf | None = None) -> list[Violation]:
    """A client order id the exchange lists under more than one order."""
    now = now or timezone.now()
    violations = []
    for view in _read(views, now, exchange_of):
        if not view.read:
            continue
        seen: dict[str, list[OrderSnapshot]] = defaultdict(list)
        for snapshots in view.orders.values():
            for snapshot in {s.id: s for s in snapshots}.values():
                if snapshot.client_order_id:
                    seen[snapshot.client_order_id].append(snapshot)
        for client_id, copies in sorted(seen.items()):
            if len(copies) < 2:
                continue
            copies.sort(key=lambda s: s.id)
            violations.append(Violation(
                CLIENT_IDS_ONCE, f"client order id {client_id}",
                f"on {view.account.name} {len(copies)} times: " + ", ".join(
                    f"{s.id} {s.status} filled {plain(s.filled)}" for s in copies),
                _evidence(account=view.account.name, client_order_id=client_id,
                          exchange_ids=[s.id for s in copies],
                          filled=[plain(s.filled) for s in copies]),
                position_id=_position_of(client_id)))
    return violations


def _position_of(client_order_id: str) -> int | None:
    return Order.objects.filter(client_order_id=client_order_id).values_list(
        "position_id", flat=True).first()


# --- 3. every active order known to the exchange, or in doubt for less than its grace -------

def order_allowed_unknown_until(order: Order, grace: timedelta) -> datetime:
    """Until when ``order`` may be missing from the exchange.

    In doubt: ``inDoubtGraceSeconds`` after the doubt began (the lookups prove it absent
    by then), plus ``grace``. Never sent: its order timeout plus ``grace`` (the timeout
    sweep ends it). Otherwise ``grace`` after the pipeline last wrote it (a poll that
    misses it puts it in doubt).
    """
    cfg = order_config(order)
    if order.in_doubt_since is not None:
        return order.in_doubt_since + timedelta(seconds=cfg.in_doubt_grace_seconds) + grace
    if order.attempts == 0 and not order.exchange_order_id:
        return order.created_at + timedelta(seconds=cfg.order_timeout_seconds) + grace
    return order.updated_at + grace


def active_orders_known(*, views: list[AccountOnExchange] | None = None,
                        now: datetime | None = None, grace: timedelta = GRACE,
                        exchange_of: ExchangeOf | None = None) -> list[Violation]:
    """An active order the exchange does not know past its allowance; an order the exchange
    has open that the database ended more than ``grace`` ago (nobody supervises it)."""
    now = now or timezone.now()
    violations = []
    for view in _read(views, now, exchange_of):
        if not view.read:
            continue
        by_client, by_id = _listed(view)
        for order in (Order.objects.filter(account=view.account, status__in=S.active())
                      .select_related("account", "strategy", "position__strategy")
                      .order_by("created_at", "pk")):
            if order.client_order_id in by_client or (order.exchange_order_id
                                                      and order.exchange_order_id in by_id):
                continue
            allowed = order_allowed_unknown_until(order, grace)
            if now < allowed:
                continue
            try:  # the listing may lag or end before the order: ask for it by its ids
                if order_locate(order, view.exchange) is not None:
                    continue
            except ExchangeError as exc:
                view.failed_lookups.append(f"lookup of {order.client_order_id}: {exc}")
                continue
            doubt = (f"in doubt since {order.in_doubt_since:%H:%M:%S} "
                     f"({order.doubt_lookups} lookups missed)" if order.in_doubt_since
                     else "not in doubt")
            violations.append(Violation(
                ACTIVE_ORDERS_KNOWN, f"order {order.client_order_id}",
                f"{order.status} in the database, unknown to {view.account.name}; {doubt}; "
                f"allowed until {allowed:%H:%M:%S}",
                _evidence(order=order.pk, client_order_id=order.client_order_id,
                          account=view.account.name, symbol=order.symbol,
                          purpose=order.purpose, status=order.status,
                          created_at=order.created_at, in_doubt_since=order.in_doubt_since,
                          doubt_lookups=order.doubt_lookups, allowed_until=allowed),
                position_id=order.position_id))
        finals = Order.objects.filter(account=view.account, status__in=S.final(),
                                      client_order_id__in=[
                                          cid for cid, s in by_client.items() if not s.is_final])
        for order in finals.order_by("created_at", "pk"):
            ended = order.finalized_at or order.updated_at
            if now < ended + grace:
                continue
            snapshot = by_client[order.client_order_id]
            violations.append(Violation(
                ACTIVE_ORDERS_KNOWN, f"order {order.client_order_id}",
                f"open on {view.account.name} ({snapshot.id}, filled {plain(snapshot.filled)} "
                f"of {plain(snapshot.amount or 0)}) but {order.status} in the database since "
                f"{ended:%H:%M:%S}: nobody supervises it",
                _evidence(order=order.pk, client_order_id=order.client_order_id,
                          account=view.account.name, symbol=order.symbol, status=order.status,
                          exchange_id=snapshot.id, exchange_status=snapshot.status,
                          finalized_at=ended),
                position_id=order.position_id))
    return violations


# --- 4. fills in the database equal fills on the exchange, per order ------------------------

def fills_match(*, views: list[AccountOnExchange] | None = None, now: datetime | None = None,
                grace: timedelta = GRACE, exchange_of: ExchangeOf | None = None
                ) -> list[Violation]:
    """Per order, filled quantity in the database against the exchange's.

    A difference counts once the database claims to know the end (the order is final)
    or nobody wrote the order for ``grace``. An order on the exchange the database does
    not hold counts at once (every order is recorded before it is sent). An order filled
    in the database that the exchange does not know counts once a lookup by its ids
    misses too.
    """
    now = now or timezone.now()
    violations = []
    for view in _read(views, now, exchange_of):
        if not view.read:
            continue
        by_client, by_id = _listed(view)
        recorded = list(Order.objects.filter(account=view.account, created_at__gte=view.since))
        missing = [cid for cid in by_client if cid not in {o.client_order_id for o in recorded}]
        recorded += Order.objects.filter(account=view.account, client_order_id__in=missing)
        known = {order.client_order_id: order for order in recorded}
        known_by_id = {order.exchange_order_id: order for order in recorded
                       if order.exchange_order_id}
        for snapshot in sorted(by_id.values(), key=lambda s: s.id):
            order = known.get(snapshot.client_order_id) or known_by_id.get(snapshot.id)
            if order is None:
                violations.append(Violation(
                    FILLS_MATCH, f"exchange order {snapshot.id}",
                    f"on {view.account.name} ({snapshot.client_order_id or 'no client id'}, "
                    f"{snapshot.side} {plain(snapshot.amount or 0)} {snapshot.symbol}, "
                    f"{snapshot.status}, filled {plain(snapshot.filled)}), not in the database",
                    _evidence(account=view.account.name, exchange_id=snapshot.id,
                              client_order_id=snapshot.client_order_id or None,
                              symbol=snapshot.symbol, exchange_status=snapshot.status,
                              exchange_filled=snapshot.filled)))
                continue
            if order.filled_quantity == snapshot.filled:
                continue
            if not order.is_final and now < order.updated_at + grace:
                continue
            violations.append(_fill_difference(view, order, snapshot.filled, snapshot.status,
                                               snapshot.id))
        for order in sorted(recorded, key=lambda o: (o.created_at, o.pk)):
            listed = order.client_order_id in by_client or order.exchange_order_id in by_id
            if listed or order.filled_quantity <= 0:
                continue
            try:  # filled here, not listed there: ask for it by its ids
                snapshot = order_locate(order, view.exchange)
            except ExchangeError as exc:
                view.failed_lookups.append(f"lookup of {order.client_order_id}: {exc}")
                continue
            if snapshot is not None and snapshot.filled == order.filled_quantity:
                continue
            violations.append(_fill_difference(
                view, order, snapshot.filled if snapshot else Decimal("0"),
                snapshot.status if snapshot else "unknown to the exchange",
                snapshot.id if snapshot else None))
    return violations


def _fill_difference(view: AccountOnExchange, order: Order, filled: Decimal,
                     status: str | None, exchange_id: str | None) -> Violation:
    return Violation(
        FILLS_MATCH, f"order {order.client_order_id}",
        f"filled {plain(order.filled_quantity)} in the database ({order.status}), "
        f"{plain(filled)} on {view.account.name} ({status})",
        _evidence(order=order.pk, client_order_id=order.client_order_id,
                  account=view.account.name, symbol=order.symbol, purpose=order.purpose,
                  status=order.status, database_filled=order.filled_quantity,
                  exchange_filled=filled, exchange_status=status, exchange_id=exchange_id),
        position_id=order.position_id)


# --- 5. net position per account and symbol equals the exchange's ----------------------------

def net_positions_match(*, views: list[AccountOnExchange] | None = None,
                        now: datetime | None = None, grace: timedelta = GRACE,
                        exchange_of: ExchangeOf | None = None) -> list[Violation]:
    """Net quantity held (long > 0) per account and symbol, database against exchange.

    A difference counts when no order of that account and symbol is active or was
    written within ``grace`` (a fill may be on its way to the database).
    """
    now = now or timezone.now()
    violations = []
    for view in _read(views, now, exchange_of):
        if not view.read:
            continue
        for check in view.positions:
            if check.matches:
                continue
            moving = Order.objects.filter(account=view.account, symbol=check.symbol).filter(
                Q(status__in=S.active()) | Q(updated_at__gt=now - grace))
            if moving.exists():
                continue
            held = list(Position.objects.filter(
                strategy__account=view.account, symbol=check.symbol,
                state__in=PositionState.active()).order_by("pk").values_list("pk", flat=True))
            violations.append(Violation(
                NET_POSITIONS_MATCH, f"{view.account.name} {check.symbol}",
                f"net {plain(check.database)} in the database (positions {held or 'none'}), "
                f"{plain(check.exchange)} on the exchange",
                _evidence(account=view.account.name, symbol=check.symbol,
                          database_net=check.database, exchange_net=check.exchange,
                          positions=held),
                position_id=held[0] if len(held) == 1 else None))
    return violations


# --- 6. a tripped scope stays tripped until an operator re-arms it ---------------------------

def trips_held() -> list[Violation]:
    """Open trips whose scope is looser than the trip left it; re-arms without an operator.

    The database alone decides (the state is the guard's own); nothing is in flight:
    the trip and its state are written in one transaction, a re-arm in another.
    """
    violations = []
    for trip in GuardTrip.objects.select_related("scope__account", "scope__strategy").filter(
            Q(rearmed_at__isnull=True) | Q(rearmed_by="") | Q(rearm_reason="")).order_by("pk"):
        scope = trip.scope
        evidence = _evidence(scope=scope.label, trip=trip.pk, code=trip.code,
                             tripped_at=trip.tripped_at, trip_state=trip.state_after,
                             state=scope.state, state_by=scope.state_by,
                             state_since=scope.state_since, rearmed_at=trip.rearmed_at,
                             rearmed_by=trip.rearmed_by)
        if trip.rearmed_at is not None:
            violations.append(Violation(
                TRIPS_HELD, f"{scope.label} trip {trip.pk}",
                f"{trip.code} trip re-armed at {trip.rearmed_at:%Y-%m-%d %H:%M:%S} without "
                f"{'an operator' if not trip.rearmed_by else 'a reason'}", evidence))
        elif TradingState.strictness(scope.state) < TradingState.strictness(trip.state_after):
            violations.append(Violation(
                TRIPS_HELD, f"{scope.label} trip {trip.pk}",
                f"{trip.code} trip of {trip.tripped_at:%Y-%m-%d %H:%M:%S} set "
                f"{trip.state_after}, the scope is {scope.state} (set by "
                f"{scope.state_by or 'unknown'} at {scope.state_since:%H:%M:%S}) and was "
                "never re-armed", evidence))
    return violations


# --- all of them -------------------------------------------------------------------------------

def check_all(*, now: datetime | None = None, grace: timedelta = GRACE,
              exchange_of: ExchangeOf | None = None) -> dict[str, list[Violation]]:
    """Every promise: name → violations (empty when it holds), each exchange read once.

    Accounts whose exchange could not be read are listed under ``exchange_unreadable``:
    their promises are unchecked, not broken.
    """
    now = now or timezone.now()
    return check_read(read_exchanges(now=now, exchange_of=exchange_of), now=now, grace=grace)


def check_read(views: list[AccountOnExchange], *, now: datetime, grace: timedelta = GRACE
               ) -> dict[str, list[Violation]]:
    """Every promise against exchanges already read (``read_exchanges``)."""
    result = {
        POSITIONS_CLOSED_IN_TIME: positions_closed_in_time(now=now, grace=grace),
        CLIENT_IDS_ONCE: client_ids_once(views=views, now=now),
        ACTIVE_ORDERS_KNOWN: active_orders_known(views=views, now=now, grace=grace),
        FILLS_MATCH: fills_match(views=views, now=now, grace=grace),
        NET_POSITIONS_MATCH: net_positions_match(views=views, now=now, grace=grace),
        TRIPS_HELD: trips_held(),
    }
    if problems := unreadable(views):
        result[EXCHANGE_UNREADABLE] = problems
    return result


def violations_of(result: dict[str, list[Violation]]) -> list[Violation]:
    """The broken promises of a ``check_all`` result (unreadable exchanges left out)."""
    return [v for name in INVARIANTS for v in result.get(name, [])]


def report_lines(result: dict[str, list[Violation]]) -> list[str]:
    """One line per promise, then one per violation (``manage.py check_invariants``)."""
    lines = []
    for name in (*INVARIANTS, EXCHANGE_UNREADABLE):
        if name not in result:
            continue
        found = result[name]
        if name == EXCHANGE_UNREADABLE:
            lines.append(f"{name}: {len(found)} accounts not checked")
        else:
            lines.append(f"{name}: {'holds' if not found else f'{len(found)} violations'}")
        lines.extend(f"  {v.subject}: {v.message}" for v in found)
    return lines


# --- alerting: the beat task ---------------------------------------------------------------

@dataclass(frozen=True)
class AlertPass:
    """What one alerting pass did: alerts raised (new, changed or due again), kept, resolved."""

    violations: int
    unchecked: int
    raised: int
    unchanged: int
    resolved: int

    def as_dict(self) -> dict[str, int]:
        return {"violations": self.violations, "unchecked": self.unchecked,
                "raised": self.raised, "unchanged": self.unchanged, "resolved": self.resolved}


def _alert_message(found: list[Violation]) -> str:
    """The evidence as one stable text: the same facts give the same message."""
    found = sorted(found, key=lambda v: (v.invariant, v.subject, v.message))
    head = f"{len(found)} violation{'s' if len(found) != 1 else ''} of the platform's promises"
    lines = [f"- {v}" for v in found[:ALERT_LINES]]
    if len(found) > ALERT_LINES:
        lines.append(f"- and {len(found) - ALERT_LINES} more (manage.py check_invariants)")
    return "\n".join([head + ":", *lines])


def _sync_alerts(kind: str, severity: str, groups: dict[int | None, list[Violation]],
                 now: datetime) -> tuple[int, int, int]:
    """One open alert of ``kind`` per group; (raised, unchanged, resolved)."""
    open_alerts = {alert.position_id: alert for alert in RiskAlert.objects.filter(
        kind=kind, resolved_at__isnull=True)}
    raised = unchanged = 0
    positions = Position.objects.in_bulk([pid for pid in groups if pid is not None])
    for position_id, found in sorted(groups.items(), key=lambda item: item[0] or 0):
        message = _alert_message(found)
        alert = open_alerts.get(position_id)
        if alert is not None and alert.message == message and now - alert.last_seen < REALERT:
            unchanged += 1
            continue
        alert_raise(position=positions.get(position_id) if position_id else None, kind=kind,
                    severity=severity, message=message, announce=True)
        raised += 1
    gone = [alert for position_id, alert in open_alerts.items() if position_id not in groups]
    return raised, unchanged, alerts_resolve(gone, now=now)


def alert_violations(result: dict[str, list[Violation]], *, now: datetime | None = None
                     ) -> AlertPass:
    """Raise, keep or resolve the ``invariant_violated`` alerts for a ``check_all`` result.

    CRITICAL, one per position (violations without a position share one), with the
    evidence as its message. An alert whose evidence is unchanged is left alone — no
    write, no push — until ``REALERT`` has passed; a changed one is raised again at
    once; one whose violations are gone is resolved. Accounts that could not be read
    get one ``invariant_unchecked`` WARNING alert the same way.
    """
    now = now or timezone.now()
    groups: dict[int | None, list[Violation]] = defaultdict(list)
    broken = violations_of(result)
    for violation in broken:
        groups[violation.position_id if _position_exists(violation) else None].append(violation)
    raised, unchanged, resolved = _sync_alerts(INVARIANT_ALERT, AlertSeverity.CRITICAL,
                                               groups, now)
    unchecked = result.get(EXCHANGE_UNREADABLE, [])
    more = _sync_alerts(UNCHECKED_ALERT, AlertSeverity.WARNING,
                        {None: unchecked} if unchecked else {}, now)
    return AlertPass(len(broken), len(unchecked), raised + more[0], unchanged + more[1],
                     resolved + more[2])


def _position_exists(violation: Violation) -> bool:
    return violation.position_id is not None and Position.objects.filter(
        pk=violation.position_id).exists()


def checking_exchange(account: ExchangeAccount) -> Exchange:
    """The exchange of ``account`` as the periodic check reads it (short request timeout)."""
    if account.is_paper:
        return exchange_for(account)
    from execution.exchanges.ccxt_exchange import CcxtExchange

    return CcxtExchange.from_account(account, timeout_ms=CHECK_TIMEOUT_MS)


def check_and_alert(*, now: datetime | None = None) -> AlertPass:
    """Check every promise and alert on what is broken (the beat task, every minute)."""
    now = now or timezone.now()
    return alert_violations(check_all(now=now, exchange_of=checking_exchange), now=now)
