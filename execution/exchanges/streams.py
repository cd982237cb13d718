"""Websocket streams of an account: the same interface for ccxt.pro and the paper exchange.

One ``ExchangeStream`` is one *session*: ``open`` connects (and authenticates where
the exchange needs it), then ``orders``, ``trades``, ``positions`` and ``tickers``
each wait for the next batch of updates, until the connection drops: every call
then raises ``TransientError`` and the owner opens a new session. A stream never
replays what happened while it was down (ccxt#26945) and may miss a final fill
(ccxt#22719): the REST reconciliation after each (re)connect is the source of truth.

Everything here is asyncio, run on the account's own event-loop thread
(``execution.streams``). Results speak our types (``OrderSnapshot``, ``TradeFill``,
``ExchangePosition``, ``Ticker``); ccxt's errors are translated where they are raised.
"""

from __future__ import annotations

import asyncio
import decimal
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from execution.exchanges.base import ExchangePosition, OrderSnapshot, Ticker, TradeFill
from execution.exchanges.errors import ExchangeError, TransientError

# The ccxt ``has`` capabilities a stream needs; without them the account stays on REST.
STREAM_CAPABILITIES = ("watchOrders", "watchMyTrades", "watchPositions", "watchTickers")
# The paper stream repeats the tickers of the symbols watched at least this often.
PAPER_TICKER_SECONDS = 1.0

StreamFactory = Callable[[], "ExchangeStream"]


class ExchangeStream(ABC):
    """One websocket session of one account."""

    @abstractmethod
    async def open(self) -> None:
        """Connect; returns once the account's private updates can arrive."""

    @abstractmethod
    async def orders(self) -> list[OrderSnapshot]:
        """The next order updates (cumulative fills, status)."""

    @abstractmethod
    async def trades(self) -> list[TradeFill]:
        """The next executions of the account's orders."""

    @abstractmethod
    async def positions(self) -> list[ExchangePosition]:
        """The next position changes (quantity 0: the symbol went flat)."""

    @abstractmethod
    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        """The next ticker updates of ``symbols``."""

    @abstractmethod
    async def close(self) -> None: ...


# --- ccxt.pro ----------------------------------------------------------------------------

class CcxtStream(ExchangeStream):
    """A ``ccxt.pro`` client (a fresh one per session), errors translated."""

    def __init__(self, cfg: Any):
        import ccxt.pro

        from execution.exchanges.ccxt_exchange import (
            DEFAULT_PROFILE,
            PROFILES,
            build_client,
            cached_markets,
        )

        self.cfg = cfg
        self.profile = PROFILES.get(cfg.exchange_id, DEFAULT_PROFILE)
        # Positions come from the REST reconciliation; the stream only sends changes.
        self.client = build_client(cfg, module=ccxt.pro, options={
            "watchPositions": {"fetchPositionsSnapshot": False,
                               "awaitPositionsSnapshot": False}})
        self._markets = cached_markets(cfg)

    @contextmanager
    def _translated(self):
        from execution.exchanges.ccxt_exchange import translate_error

        try:
            with decimal.localcontext():
                yield
        except ExchangeError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise translate_error(exc, self.profile) from exc

    async def open(self) -> None:
        with self._translated():
            if self._markets:
                self.client.set_markets(*self._markets)
            else:
                await self.client.load_markets()
            if self.profile.ws_authenticates:
                url = await self.client.get_url_by_market_type(None, True, "watchOrders", {})
                await self.client.authenticate(url)

    async def orders(self) -> list[OrderSnapshot]:
        from execution.exchanges.ccxt_exchange import snapshot_from_ccxt

        with self._translated():
            return [snapshot_from_ccxt(raw) for raw in await self.client.watch_orders()]

    async def trades(self) -> list[TradeFill]:
        from execution.exchanges.ccxt_exchange import trade_from_ccxt

        with self._translated():
            return [trade_from_ccxt(raw) for raw in await self.client.watch_my_trades()]

    async def positions(self) -> list[ExchangePosition]:
        from execution.exchanges.ccxt_exchange import _dec, position_from_ccxt

        with self._translated():
            raw_positions = await self.client.watch_positions()
            return [position_from_ccxt(raw, _dec(raw.get("contracts")) or decimal.Decimal(0))
                    for raw in raw_positions if raw.get("symbol")]

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        from execution.exchanges.ccxt_exchange import ticker_from_ccxt

        with self._translated():
            raw = await self.client.watch_tickers(list(symbols))
            return [ticker_from_ccxt(ticker, symbol) for symbol, ticker in raw.items()]

    async def close(self) -> None:
        try:
            await self.client.close()
        except Exception:  # a dead connection: nothing left to close
            pass


# --- the paper exchange ---------------------------------------------------------------------

_DISCONNECTED = object()


class PaperStream(ExchangeStream):
    """The paper exchange's updates, pushed as they happen (see ``PaperExchange.subscribe``)."""

    def __init__(self, exchange: Any):
        self.exchange = exchange
        self._queues: dict[str, asyncio.Queue] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queues = {topic: asyncio.Queue() for topic in ("order", "trade", "position",
                                                             "ticker")}
        self._unsubscribe = self.exchange.subscribe(self._heard)

    def _heard(self, topic: str, payload: Any) -> None:
        """Called on the exchange's thread: hand the update to this session's loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if topic == "disconnect":
            for queue in self._queues.values():
                loop.call_soon_threadsafe(queue.put_nowait, _DISCONNECTED)
        elif topic in self._queues:
            loop.call_soon_threadsafe(self._queues[topic].put_nowait, payload)

    async def _next(self, topic: str, timeout: float | None = None) -> list[Any]:
        """At least one update of ``topic`` (all that are queued); [] after ``timeout``."""
        queue = self._queues[topic]
        try:
            first = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            return []
        batch = [first]
        while not queue.empty():
            batch.append(queue.get_nowait())
        if any(item is _DISCONNECTED for item in batch):
            raise TransientError("paper: stream connection dropped", code="stream_down")
        return batch

    async def orders(self) -> list[OrderSnapshot]:
        return await self._next("order")

    async def trades(self) -> list[TradeFill]:
        return await self._next("trade")

    async def positions(self) -> list[ExchangePosition]:
        return await self._next("position")

    async def tickers(self, symbols: list[str]) -> list[Ticker]:
        """Price moves of ``symbols`` as they happen, and every symbol at least every second."""
        wanted = set(symbols)
        moved = [t for t in await self._next("ticker", PAPER_TICKER_SECONDS)
                 if t.symbol in wanted]
        if moved:
            return moved
        return [self.exchange.current_ticker(symbol) for symbol in sorted(wanted)]

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def stream_factory(account: Any, exchange: Any) -> tuple[StreamFactory | None, str]:
    """How to open sessions of ``account``'s stream, or ``None`` and why it has none."""
    if not account.sync_settings().streams:
        return None, "streams switched off for this account (accountSync.streams)"
    if account.is_paper:
        return (lambda: PaperStream(exchange)), ""
    import ccxt.pro

    from execution.exchanges.ccxt_exchange import DEFAULT_PROFILE, PROFILES, CcxtSettings

    pro_class = getattr(ccxt.pro, account.exchange_id, None)
    if pro_class is None:
        return None, f"ccxt.pro has no {account.exchange_id}"
    has = pro_class().has
    missing = [name for name in STREAM_CAPABILITIES if not has.get(name)]
    if missing:
        return None, f"{account.exchange_id} has no {', '.join(missing)} in ccxt.pro"
    profile = PROFILES.get(account.exchange_id, DEFAULT_PROFILE)
    if account.api_base_url and profile.ws_urls is None:
        return None, "websocket URLs under api_base_url unknown for this exchange"
    cfg = CcxtSettings.from_account(account)
    return (lambda: CcxtStream(cfg)), ""
