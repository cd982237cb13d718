"""Live account truth: one stream owner per account, marks, and REST reconciliation.

Each enabled exchange account has exactly one *owner* among all the platform's
processes (the embedded ``runplatform``, or the production Celery workers): the
owner holds a lease on the account's ``AccountStream`` row (``owner``,
``lease_until``) and renews it every third of its length. A process whose owner
died (killed, machine gone) stops renewing; once the lease ran out another
process's ``StreamSupervisor`` takes the account over. The lease lasts a third of
``reconcileIntervalSeconds`` (2–20 s), so a survivor takes over well within one
reconcile interval.

The owner (``AccountSync``) runs two threads:

- the account's *event loop* (asyncio): one ``ExchangeStream`` session at a time
  (ccxt.pro, or the paper exchange's own stream) watching orders, executions,
  positions and tickers. A dropped session is reopened with a growing delay
  (0.25 s → 15 s); nothing is replayed across the gap, so
- the *sync thread* does everything that touches the database, in order:
  * an order update goes into the same keyed fill path as polling
    (``pipeline.order_sync``): applied only when it says something new (more fill, a
    final state, the exchange's id), never while a worker holds the order's lease,
    and a fill seen twice — by the stream and by REST — is applied once (its key is
    ``<client order id>:<cumulative quantity>``);
  * an execution of an order whose recorded fill is behind what the executions add
    up to triggers a REST read of that order (a final fill the order topic missed);
  * a position update brings the position comparison forward (1 s later);
  * tickers become marks, applied at most once a second; every
    ``markRefreshSeconds`` the symbols without a fresh ticker (all of them without a
    stream) are read in one batched ``fetch_tickers``;
  * after every (re)connect and every ``reconcileIntervalSeconds``: the account's
    active orders, balances and positions are reconciled over REST — the source of
    truth. What the position layers do with the positions (untracked ones, flat
    ones) is theirs: they listen to ``execution.signals``.

Accounts without a stream (``accountSync.streams`` off, an exchange without the
ccxt.pro capabilities, a replaced API URL whose websocket URLs are unknown) get
the same owner in REST mode: marks by ``fetch_tickers`` and the reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, close_old_connections, connections
from django.db.models import F, Q
from django.utils import timezone

from execution.exchanges import exchange_for
from execution.exchanges.base import Exchange, ExchangePosition, OrderSnapshot, Ticker, TradeFill
from execution.exchanges.errors import ExchangeError
from execution.exchanges.paper import PaperExchange
from execution.exchanges.streams import StreamFactory, stream_factory
from execution.models import AccountStream, ExchangeAccount, Order, OrderStatus
from execution.pipeline import OrderMoved, order_held, order_locate, order_sync, plain
from execution.signals import account_marks, account_positions_read, account_symbols_wanted

log = logging.getLogger(__name__)

MARK_FLUSH_SECONDS = 1.0  # streamed ticks become marks at most this often
STATUS_FLUSH_SECONDS = 1.0  # message counters written at most this often
POSITION_CHECK_DELAY = 1.0  # after a position update, compare positions this much later
RECONNECT_DELAYS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0)
SUPERVISOR_POLL_SECONDS = 1.0
CONNECT_GRACE_SECONDS = 5.0  # a stream not connected by then: reconcile over REST anyway
STOP_TIMEOUT_SECONDS = 5.0

Event = tuple[str, Any, datetime]
ExchangeOf = Callable[[ExchangeAccount], Exchange]
StreamsOf = Callable[[ExchangeAccount, Exchange], tuple[StreamFactory | None, str]]


def process_owner() -> str:
    """A name for a stream owner: this host and process, plus a token unique to the owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_seconds(account: ExchangeAccount) -> float:
    """The lease of an account's stream (``interval_lease_seconds`` of its reconcile interval)."""
    return interval_lease_seconds(account.sync_settings().reconcile_interval_seconds)


def interval_lease_seconds(reconcile_interval_seconds: float) -> float:
    """A third of the reconcile interval, 2–20 s: a survivor takes over well within one
    interval."""
    return min(max(reconcile_interval_seconds / 3, 2.0), 20.0)


# --- the lease ------------------------------------------------------------------------------

def stream_lease_acquire(account: ExchangeAccount, owner: str, *, now: datetime | None = None
                         ) -> bool:
    """Take the account's stream if nobody holds it (or its holder's lease ran out)."""
    now = now or timezone.now()
    AccountStream.objects.bulk_create([AccountStream(account=account)], ignore_conflicts=True)
    until = now + timedelta(seconds=lease_seconds(account))
    free = Q(owner="") | Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    taken = AccountStream.objects.filter(free, account=account).exclude(owner=owner).update(
        owner=owner, lease_until=until, owner_since=now, connected=False,
        takeovers=F("takeovers") + 1)
    if taken:
        return True
    return AccountStream.objects.filter(account=account, owner=owner).update(
        lease_until=until) == 1


def stream_lease_renew(account: ExchangeAccount, owner: str, *, now: datetime | None = None
                       ) -> bool:
    """Extend the lease; False when another process took the account over meanwhile."""
    now = now or timezone.now()
    return AccountStream.objects.filter(account=account, owner=owner).update(
        lease_until=now + timedelta(seconds=lease_seconds(account))) == 1


def stream_lease_release(account_id: int, owner: str) -> None:
    """Give the account up at once (a clean stop): the next owner need not wait."""
    AccountStream.objects.filter(account_id=account_id, owner=owner).update(
        owner="", lease_until=None, connected=False)


def stream_status_update(account_id: int, owner: str, **fields: Any) -> bool:
    """Write status fields, only while ``owner`` holds the account.

    The status is what the operator reads, not what trading relies on: a database
    hiccup here is logged and the owner carries on (False).
    """
    try:
        return AccountStream.objects.filter(account_id=account_id, owner=owner).update(
            **fields, updated_at=timezone.now()) == 1
    except DatabaseError:
        log.warning("account %s: stream status not written", account_id, exc_info=True)
        return False


# --- what the exchange says about one of our orders --------------------------------------------

def _is_news(order: Order, snapshot: OrderSnapshot) -> bool:
    """Whether the exchange's view moves the order: more fill, a final state, its id."""
    return (min(snapshot.filled, order.quantity) > order.filled_quantity
            or (snapshot.is_final and not order.is_final)
            or (bool(snapshot.id) and not order.exchange_order_id))


def order_apply_exchange_view(order: Order, snapshot: OrderSnapshot, *, source: str,
                              now: datetime | None = None) -> str:
    """Apply what the exchange says about ``order`` through the pipeline's keyed fill path.

    Nothing is written when the view tells nothing new (an echo of the known state
    would only bump the order's version under the worker polling it), nor while a
    worker holds the order's lease (it is sending it and reads the answer itself).
    ``OrderMoved``: re-read once and try again. Returns what happened, for the report.
    """
    from execution.services import order_actions_settle

    now = now or timezone.now()
    for _ in range(2):
        if order.is_final:
            return "final already"
        if not _is_news(order, snapshot):
            return "nothing new"
        if order_held(order, now):
            return "left to the worker holding it"
        was_cancelling = order.status == OrderStatus.CANCELLING
        before = order.filled_quantity
        try:
            order = order_sync(order, snapshot).order
        except OrderMoved:
            order = Order.objects.select_related("account", "strategy", "position",
                                                 "action").get(pk=order.pk)
            continue
        if order.is_final:
            order_actions_settle(order, cancelled=was_cancelling or order.timed_out)
        filled = order.filled_quantity - before
        log.debug("%s: order %s %s%s", source, order.client_order_id, order.status,
                  f", {plain(filled)} filled" if filled else "")
        return f"applied ({order.status}{', +' + plain(filled) if filled else ''})"
    return "moved by another worker: left to it"


def our_order(account_id: int, *, client_order_id: str = "", exchange_order_id: str = ""
              ) -> Order | None:
    """The order the exchange names, if it is one of ours on this account."""
    condition = Q()
    if client_order_id:
        condition |= Q(client_order_id=client_order_id)
    if exchange_order_id:
        condition |= Q(exchange_order_id=exchange_order_id)
    if not condition:
        return None
    return (Order.objects.select_related("account", "strategy", "position", "action")
            .filter(condition, account_id=account_id).first())


# --- the REST reconciliation of one account -------------------------------------------------------

@dataclass
class AccountReconcile:
    """What one REST reconciliation of an account found."""

    account: str
    at: datetime
    orders_checked: int = 0
    orders_applied: list[str] = field(default_factory=list)
    balances: dict[str, dict[str, str]] = field(default_factory=dict)
    positions: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "orders_checked": self.orders_checked,
                "orders_applied": self.orders_applied, "positions": self.positions,
                "errors": self.errors}


def account_reconcile(account: ExchangeAccount, exchange: Exchange, *,
                      positions: bool = True) -> AccountReconcile:
    """Reconcile one account with its exchange over REST: orders, balances, positions.

    Every active order of the account that no worker is sending is read back (by
    exchange id, else client order id) and applied when the exchange knows more
    (``order_apply_exchange_view``: keyed, never twice). Orders the exchange does not
    list are left to the pipeline's in-doubt lookups. Then the balances are stored,
    and the account's whole position book is announced (``account_positions_read``)
    for the position layers to compare — read after the orders, so that fills just
    applied are part of what they compare. A paper book lives in this process's
    memory and holds only what was traded since it started: its positions are not
    compared.
    """
    now = timezone.now()
    report = AccountReconcile(account=account.name, at=now)
    active = list(Order.objects.select_related("account", "strategy", "position", "action")
                  .filter(account=account, status__in=OrderStatus.active()).order_by("pk"))
    for order in active:
        if order_held(order, timezone.now()):
            continue
        report.orders_checked += 1
        try:
            snapshot = order_locate(order, exchange)
        except ExchangeError as exc:
            report.errors.append(f"order {order.client_order_id}: {exc}")
            continue
        if snapshot is not None:
            outcome = order_apply_exchange_view(order, snapshot, source="reconcile")
            if outcome.startswith("applied"):
                report.orders_applied.append(f"{order.client_order_id}: {outcome}")
    try:
        report.balances = {currency: {"free": plain(line.free), "used": plain(line.used),
                                      "total": plain(line.total)}
                           for currency, line in sorted(exchange.fetch_balance().items())
                           if line.total}
        AccountStream.objects.filter(account=account).update(
            balances=report.balances, balances_at=timezone.now())
    except ExchangeError as exc:
        report.errors.append(f"balances: {exc}")
    if positions:
        report.positions = account_positions_check(account, exchange)
    return report


def account_positions_check(account: ExchangeAccount, exchange: Exchange) -> dict[str, Any]:
    """Read the account's whole position book and hand it to the position layers.

    Not for a paper book: it lives in this process's memory and holds only what was
    traded since the process started, not the positions supervised before.
    """
    if isinstance(exchange, PaperExchange):
        return {"skipped": "paper book: lives in this process, not compared"}
    read_at = timezone.now()
    try:
        book = exchange_positions(account, exchange)
    except ExchangeError as exc:
        return {"error": str(exc)}
    summary: dict[str, Any] = {"exchange": {p.symbol: plain(p.signed_quantity) for p in book}}
    for _, answer in account_positions_read.send(sender=ExchangeAccount, account=account,
                                                 positions=book, read_at=read_at,
                                                 exchange=exchange):
        if isinstance(answer, dict):
            summary.update(answer)
    return summary


def exchange_positions(account: ExchangeAccount, exchange: Exchange) -> list[ExchangePosition]:
    """The account's positions. Derivatives: the exchange's position list; spot: each coin
    held (a spot position is a balance of its base currency), as ``COIN/QUOTE``."""
    if account.market_type != "spot":
        return [p for p in exchange.fetch_positions() if p.quantity]
    quote = account.quote_currency
    return [ExchangePosition(f"{currency}/{quote}", "long", line.total, None)
            for currency, line in sorted(exchange.fetch_balance().items())
            if currency != quote and line.total > 0]


def symbols_wanted(account_id: int) -> list[str]:
    """The symbols the layers above need marks for (their open positions)."""
    wanted: set[str] = set()
    for _, answer in account_symbols_wanted.send(sender=ExchangeAccount, account_id=account_id):
        wanted.update(answer or ())
    return sorted(wanted)


def marks_publish(account_id: int, tickers: list[Ticker], at: datetime) -> int:
    """Announce marks (one per symbol); returns how many had a price."""
    marks = {t.symbol: t.mark_price for t in tickers if t.mark_price is not None}
    if marks:
        account_marks.send(sender=ExchangeAccount, account_id=account_id, marks=marks, at=at)
    return len(marks)


# --- the owner of one account ----------------------------------------------------------------

class AccountSync:
    """The owner of one account's live truth in this process (see the module doc).

    Started by the ``StreamSupervisor`` once it holds the account's lease; stops when
    asked, when it loses the lease, or when the account is disabled.
    """

    def __init__(self, account_id: int, *, owner: str, exchange_of: ExchangeOf = exchange_for,
                 streams_of: StreamsOf = stream_factory) -> None:
        self.account_id = account_id
        self.owner = owner
        self.exchange_of = exchange_of
        self.streams_of = streams_of
        self.events: queue.Queue[Event] = queue.Queue()
        self.stopping = threading.Event()
        self.lost_lease = False
        self.connected = threading.Event()
        self.progress = threading.Condition()  # notified after every step: tests wait on it
        self.reconciles = 0
        self.sessions = 0
        self.marks_published = 0
        self.watched: list[str] = []
        self._thread = threading.Thread(target=self._run, name=f"account-sync-{account_id}",
                                        daemon=True)
        self._loop_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_stop: asyncio.Event | None = None
        self._ticks: dict[str, tuple[Ticker, datetime, float]] = {}
        self._dirty: set[str] = set()
        self._trade_quantity: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self._messages = 0
        self._last_message_at: datetime | None = None
        self._was_connected = False
        self._last_flush = 0.0

    # -- control ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        self.stopping.set()
        self.events.put(("stop", None, timezone.now()))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- the sync thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            log.exception("account %s: stream owner failed", self.account_id)
        finally:
            self._stop_loop()
            self._notify()
            try:
                if not self.lost_lease:
                    stream_lease_release(self.account_id, self.owner)
            except Exception:
                log.exception("account %s: lease not released", self.account_id)
            connections.close_all()

    def _account(self) -> ExchangeAccount | None:
        return ExchangeAccount.objects.filter(pk=self.account_id, enabled=True).first()

    def _serve(self) -> None:
        account = self._account()
        if account is None:
            return
        try:
            exchange = self.exchange_of(account)
        except ExchangeError as exc:  # e.g. credentials that may not be sent: wait, retry
            self._record_error(f"exchange: {exc}")
            self.stopping.wait(account.sync_settings().reconcile_interval_seconds)
            return
        try:
            factory, why = self.streams_of(account, exchange)
        except ExchangeError as exc:
            factory, why = None, f"no stream: {exc}"
        mode = AccountStream.Mode.STREAM if factory else AccountStream.Mode.REST
        stream_status_update(self.account_id, self.owner, mode=mode, connected=False,
                             last_error="" if factory else why)
        if factory is not None:
            self._start_loop(factory)
        lease = lease_seconds(account)
        now = time.monotonic()
        # With a stream the first reconciliation follows its connection (that is what
        # covers the gap); should it not connect soon, the interval's runs go on anyway.
        first_reconcile = now + CONNECT_GRACE_SECONDS if factory is not None else now
        timers = {"renew": now + lease / 3, "reconcile": first_reconcile, "marks": now,
                  "status": now + STATUS_FLUSH_SECONDS, "flush": float("inf"),
                  "positions": float("inf")}
        while not self.stopping.is_set():
            wait = max(min(timers.values()) - time.monotonic(), 0.0)
            try:
                event = self.events.get(timeout=wait)
            except queue.Empty:
                event = None
            close_old_connections()
            try:
                if event is not None:
                    self._handle(event, account, exchange, timers)
                    while not self.events.empty():
                        self._handle(self.events.get_nowait(), account, exchange, timers)
                account = self._due(account, exchange, timers) or account
            except Exception as exc:  # a database or exchange hiccup must not end the owner
                log.exception("account %s: stream owner step failed", self.account_id)
                self._record_error(f"{type(exc).__name__}: {exc}")
                self.stopping.wait(1.0)
            self._notify()
            if self.lost_lease:
                return

    def _due(self, account: ExchangeAccount, exchange: Exchange,
             timers: dict[str, float]) -> ExchangeAccount | None:
        now = time.monotonic()
        if now >= timers["renew"]:
            if not stream_lease_renew(account, self.owner):
                log.warning("account %s: stream taken over by another process", account.name)
                self.lost_lease = True
                return None
            timers["renew"] = now + lease_seconds(account) / 3
        if now >= timers["reconcile"]:
            account = self._account()
            if account is None:  # disabled meanwhile
                self.stopping.set()
                return None
            self.reconcile(account, exchange)
            timers["reconcile"] = time.monotonic() + account.sync_settings().reconcile_interval_seconds
            timers["positions"] = float("inf")
        if now >= timers["positions"]:
            timers["positions"] = float("inf")
            account_positions_check(account, exchange)
        if now >= timers["marks"]:
            self.refresh_marks(account, exchange)
            timers["marks"] = time.monotonic() + account.sync_settings().mark_refresh_seconds
        if now >= timers["flush"]:
            self.flush_ticks()
            timers["flush"] = float("inf")
        if now >= timers["status"]:
            self._flush_status()
            timers["status"] = time.monotonic() + STATUS_FLUSH_SECONDS
        return account

    def _handle(self, event: Event, account: ExchangeAccount, exchange: Exchange,
                timers: dict[str, float]) -> None:
        kind, payload, at = event
        if kind == "stop":
            return
        if kind == "connected":
            reconnect = self._was_connected
            self._was_connected = True
            self.sessions += 1
            stream_status_update(self.account_id, self.owner, connected=True, connected_at=at,
                                 last_error="",
                                 **({"reconnects": F("reconnects") + 1} if reconnect else {}))
            self.connected.set()
            timers["reconcile"] = time.monotonic()  # no backfill: REST tells what was missed
            return
        if kind == "disconnected":
            self.connected.clear()
            stream_status_update(self.account_id, self.owner, connected=False,
                                 last_error=str(payload)[:2000], last_error_at=at)
            return
        self._messages += 1
        self._last_message_at = at
        if kind == "orders":
            for snapshot in payload:
                self.order_update(snapshot)
        elif kind == "trades":
            self.trades_update(payload, exchange)
        elif kind == "positions":
            timers["positions"] = min(timers["positions"],
                                      time.monotonic() + POSITION_CHECK_DELAY)
        elif kind == "tickers":
            mono = time.monotonic()
            for ticker in payload:
                self._ticks[ticker.symbol] = (ticker, at, mono)
                self._dirty.add(ticker.symbol)
            timers["flush"] = min(timers["flush"], max(
                mono, self._last_flush + MARK_FLUSH_SECONDS))

    # -- what the owner does (also called directly by tests) ------------------------------
    def order_update(self, snapshot: OrderSnapshot) -> str:
        order = our_order(self.account_id, client_order_id=snapshot.client_order_id,
                          exchange_order_id=snapshot.id)
        if order is None:
            return "not ours"
        return order_apply_exchange_view(order, snapshot, source="stream")

    def trades_update(self, trades: list[TradeFill], exchange: Exchange) -> list[str]:
        """Executions: an order whose recorded fill is behind them is read back over REST."""
        behind: dict[int, Order] = {}
        for trade in trades:
            key = (trade.client_order_id, trade.order_id)
            self._trade_quantity[key] += trade.amount
            order = our_order(self.account_id, client_order_id=trade.client_order_id,
                              exchange_order_id=trade.order_id)
            if order is not None and not order.is_final and (
                    order.filled_quantity < self._trade_quantity[key]):
                behind[order.pk] = order
        outcomes = []
        for order in behind.values():
            try:
                snapshot = order_locate(order, exchange)
            except ExchangeError as exc:
                outcomes.append(f"{order.client_order_id}: {exc}")
                continue
            if snapshot is not None:
                outcomes.append(order_apply_exchange_view(order, snapshot,
                                                          source="stream execution"))
        return outcomes

    def reconcile(self, account: ExchangeAccount, exchange: Exchange) -> AccountReconcile:
        report = account_reconcile(account, exchange)
        stream_status_update(self.account_id, self.owner, last_reconcile_at=report.at,
                             last_reconcile=report.as_dict(),
                             **({"last_error": "; ".join(report.errors)[:2000],
                                 "last_error_at": report.at} if report.errors else {}))
        self.reconciles += 1
        return report

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds after one of the owner's steps (tests, tools)."""
        with self.progress:
            return self.progress.wait_for(predicate, timeout)

    def _notify(self) -> None:
        with self.progress:
            self.progress.notify_all()

    def refresh_marks(self, account: ExchangeAccount, exchange: Exchange) -> int:
        """Every markRefreshSeconds: symbols without a fresh streamed tick, read over REST."""
        self.watched = symbols_wanted(account.pk)
        interval = account.sync_settings().mark_refresh_seconds
        now = time.monotonic()
        stale = [symbol for symbol in self.watched if symbol not in self._ticks
                 or now - self._ticks[symbol][2] >= interval]
        if not stale:
            return 0
        try:
            tickers = exchange.fetch_tickers(stale)
        except ExchangeError as exc:
            self._record_error(f"marks: {exc}")
            return 0
        at = timezone.now()
        for ticker in tickers.values():
            self._ticks[ticker.symbol] = (ticker, at, time.monotonic())
            self._dirty.discard(ticker.symbol)
        return self._publish(list(tickers.values()), at)

    def flush_ticks(self) -> int:
        """Streamed ticks since the last flush become marks (one announcement).

        A write that fails (a database hiccup) keeps them due: the owner's next step
        writes them, instead of the marks aging until the next tick or REST refresh.
        """
        dirty, self._dirty = self._dirty, set()
        self._last_flush = time.monotonic()
        tickers = [self._ticks[s][0] for s in sorted(dirty) if s in self._ticks]
        if not tickers:
            return 0
        try:
            return self._publish(tickers, max(self._ticks[t.symbol][1] for t in tickers))
        except Exception:
            self._dirty |= dirty
            raise

    def _publish(self, tickers: list[Ticker], at: datetime) -> int:
        count = marks_publish(self.account_id, tickers, at)
        self.marks_published += count
        return count

    def _flush_status(self) -> None:
        if self._last_message_at is None:
            return
        messages, self._messages = self._messages, 0
        stream_status_update(self.account_id, self.owner, last_message_at=self._last_message_at,
                             messages=F("messages") + messages,
                             **({"last_mark_at": timezone.now()} if self.marks_published
                                else {}))

    def _record_error(self, message: str) -> None:
        stream_status_update(self.account_id, self.owner, last_error=message[:2000],
                             last_error_at=timezone.now())

    # -- the event loop thread --------------------------------------------------------------
    def _post(self, kind: str, payload: Any = None) -> None:
        self.events.put((kind, payload, timezone.now()))

    def _start_loop(self, factory: StreamFactory) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._loop_stop = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(self._sessions(factory))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop_thread = threading.Thread(target=run, name=f"account-stream-{self.account_id}",
                                             daemon=True)
        self._loop_thread.start()
        ready.wait()

    def _stop_loop(self) -> None:
        loop, stop = self._loop, self._loop_stop
        if loop is None or stop is None or self._loop_thread is None:
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop already ended
            pass
        self._loop_thread.join(STOP_TIMEOUT_SECONDS)

    async def _sessions(self, factory: StreamFactory) -> None:
        """One session after the other until stopped; a failed one is retried, slower."""
        assert self._loop_stop is not None
        failures = 0
        while not self._loop_stop.is_set():
            stream = None
            try:
                stream = factory()
                await stream.open()
                failures = 0
                self._post("connected")
                await self._session(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._loop_stop.is_set():
                    self._post("disconnected", f"{type(exc).__name__}: {exc}")
                failures += 1
            finally:
                if stream is not None:
                    await stream.close()
            delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS)) - 1] if failures else 0
            try:
                await asyncio.wait_for(self._loop_stop.wait(), delay or 0.01)
            except TimeoutError:
                pass

    async def _session(self, stream: Any) -> None:
        """Watch every topic until one fails (the connection dropped) or the owner stops."""
        assert self._loop_stop is not None

        async def watch(kind: str, next_batch: Callable[[], Any]) -> None:
            while True:
                batch = await next_batch()
                if batch:
                    self._post(kind, batch)

        async def watch_tickers() -> None:
            while True:
                symbols = list(self.watched)
                if not symbols:
                    await asyncio.sleep(0.25)
                    continue
                batch = await stream.tickers(symbols)
                if batch:
                    self._post("tickers", batch)

        tasks = [asyncio.ensure_future(coro) for coro in (
            watch("orders", stream.orders), watch("trades", stream.trades),
            watch("positions", stream.positions), watch_tickers(), self._loop_stop.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()


# --- one supervisor per process -----------------------------------------------------------------

class StreamSupervisor:
    """Owns the accounts this process holds the lease of; takes over orphaned ones.

    A platform component (``start``/``stop``/``is_alive``): ``runplatform`` runs one,
    and each production Celery worker process runs one (``on_worker_ready``); the
    leases make exactly one of them the owner of each account.
    """

    name = "streams"

    def __init__(self, *, owner: str | None = None, exchange_of: ExchangeOf = exchange_for,
                 streams_of: StreamsOf = stream_factory,
                 poll_seconds: float = SUPERVISOR_POLL_SECONDS) -> None:
        self.owner = owner or process_owner()
        self.exchange_of = exchange_of
        self.streams_of = streams_of
        self.poll_seconds = poll_seconds
        self.syncs: dict[int, AccountSync] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-supervisor", daemon=True)

    def start(self) -> str:
        self._thread.start()
        return f"account streams, owner {self.owner} (one owner per account across processes)"

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        self._stop.set()
        self._thread.join(timeout)
        stopped = [sync.stop(timeout) for sync in list(self.syncs.values())]
        return not self._thread.is_alive() and all(stopped)

    def abandon(self) -> None:
        """Stop without giving the leases up (what a killed process leaves behind; tests)."""
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_SECONDS)
        for sync in list(self.syncs.values()):
            sync.lost_lease = True
            sync.stop()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    close_old_connections()
                    self.poll_once()
                except Exception:
                    log.exception("stream supervisor: poll failed")
                self._stop.wait(self.poll_seconds)
        finally:
            connections.close_all()

    def poll_once(self) -> list[int]:
        """Start an owner for every enabled account whose lease this process gets."""
        started = []
        enabled = {a.pk: a for a in ExchangeAccount.objects.filter(enabled=True).order_by("pk")}
        for account_id, sync in list(self.syncs.items()):
            if not sync.is_alive() or account_id not in enabled:
                sync.stop()
                del self.syncs[account_id]
        for account_id, account in enabled.items():
            if account_id in self.syncs or self._stop.is_set():
                continue
            if not stream_lease_acquire(account, self.owner):
                continue
            sync = AccountSync(account_id, owner=self.owner, exchange_of=self.exchange_of,
                               streams_of=self.streams_of)
            self.syncs[account_id] = sync
            sync.start()
            started.append(account_id)
            log.info("account %s: stream owner started (%s)", account.name, self.owner)
        return started
