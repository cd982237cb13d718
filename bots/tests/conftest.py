"""Fixtures of the bots tests: a connection, and a scripted freqtrade bot.

``ScriptedBot`` keeps trades the way freqtrade does (fee 0.1 % each side, profit
rounded to 8 places, floats rendered with ``str``) and, like freqtrade, sends its
webhooks *synchronously, before it answers*: ``forceexit`` posts the ``exit_fill``
to the platform's webhook through the whole Django stack, then returns. The bodies
are the ones a real freqtrade 2026.9 sent with the README's webhook block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from bots import freqtrade
from bots.connections import bot_connection_create
from bots.freqtrade import BotApiError

# The time of the real bot run the bodies below were captured from.
T0 = datetime(2026, 12, 6, 6, 26, 38, 269933, tzinfo=UTC)
FEE = 0.001


def rendered_time(at: datetime) -> str:
    """freqtrade's ``str(datetime)`` of an aware UTC time."""
    return str(at.astimezone(UTC))


def entry_fill_body(secret: str, **overrides: str) -> dict[str, str]:
    """An ``entry_fill`` body exactly as freqtrade 2026.9 rendered it."""
    return {"event": "entry_fill", "secret": secret, "trade_id": "1", "pair": "XRP/USDT",
            "direction": "Long", "amount": "9.1", "open_rate": "1.0979",
            "open_date": "2026-12-06 06:26:38.269933+00:00", **overrides}


def exit_fill_body(secret: str, **overrides: str) -> dict[str, str]:
    """The ``exit_fill`` of a forced exit of that trade, exactly as freqtrade rendered it."""
    return {"event": "exit_fill", "secret": secret, "trade_id": "1", "pair": "XRP/USDT",
            "direction": "Long", "amount": "9.1", "open_rate": "1.0979",
            "open_date": "2026-12-06 06:26:38.269933+00:00", "close_rate": "1.0977",
            "close_date": "2026-12-06 06:26:39.404000+00:00", "exit_reason": "force_exit",
            "profit_amount": "-0.02179996", "profit_ratio": "-0.0021798",
            "is_final_exit": "True", **overrides}


@pytest.fixture
def clock():
    with time_machine.travel(T0 + timedelta(seconds=2), tick=False) as traveller:
        yield traveller


@pytest.fixture
def web() -> Client:
    return Client()


@dataclass
class Connected:
    connection: Any
    secret: str

    @property
    def url(self) -> str:
        return f"/api/bots/{self.connection.name}/webhook"


@pytest.fixture
def bot_env(monkeypatch):
    monkeypatch.setenv("BOT_FT_USER", "ft")
    monkeypatch.setenv("BOT_FT_PASSWORD", "ft-pass")


@pytest.fixture
def connected(db, strategy, bot_env) -> Connected:
    connection, secret = bot_connection_create(
        name="ft-main", strategy=strategy, api_url="http://127.0.0.1:18080",
        username_env="BOT_FT_USER", password_env="BOT_FT_PASSWORD", actor="test")
    return Connected(connection, secret)


def post(web: Client, url: str, body: Any) -> Any:
    return web.post(url, data=json.dumps(body), content_type="application/json")


@dataclass
class ScriptedBot:
    """A freqtrade bot as the platform sees it: REST answers and synchronous webhooks."""

    web: Client
    connected: Connected
    traveller: Any
    state_text: str = "running"
    trades: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, int | None]] = field(default_factory=list)
    forceexit_mode: str = "fill"  # fill | accept | refuse | unreachable
    webhooks_dropped: set[str] = field(default_factory=set)
    answers: list[Any] = field(default_factory=list)
    close_rate: float = 1.0977

    # --- the trader's side ---------------------------------------------------------

    def webhook(self, body: dict[str, str]) -> Any:
        if body["event"] in self.webhooks_dropped:
            return None
        response = post(self.web, self.connected.url, body)
        self.answers.append(response)
        return response

    def enter(self, trade_id: int = 1, *, pair: str = "XRP/USDT", amount: float = 9.1,
              rate: float = 1.0979, short: bool = False) -> dict[str, Any]:
        now = datetime.now(UTC)
        record = {"trade_id": trade_id, "pair": pair, "is_open": True, "is_short": short,
                  "amount": amount, "open_rate": rate,
                  "open_timestamp": int(now.timestamp() * 1000),
                  "open_date": now.strftime("%Y-%m-%d %H:%M:%S"), "fee_open": FEE,
                  "fee_open_cost": round(amount * rate * FEE, 8), "close_rate": None,
                  "close_timestamp": None, "close_profit_abs": None, "exit_reason": None,
                  "realized_profit": 0.0}
        self.trades[trade_id] = record
        self.webhook({"event": "entry_fill", "secret": self.connected.secret,
                      "trade_id": str(trade_id), "pair": pair,
                      "direction": "Short" if short else "Long", "amount": str(amount),
                      "open_rate": str(rate), "open_date": rendered_time(now)})
        return record

    def leave(self, trade_id: int, *, reason: str, rate: float | None = None,
              amount: float | None = None) -> dict[str, str]:
        """The bot exits (all, or ``amount`` of it) and reports the fill."""
        record = self.trades[trade_id]
        rate = rate if rate is not None else self.close_rate
        part = amount if amount is not None else record["amount"]
        final = part >= record["amount"]
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # an order's fill time
        opened = part * record["open_rate"] * (1 + FEE)
        closed = part * rate * (1 - FEE)
        profit = round((opened - closed) if record["is_short"] else (closed - opened), 8)
        record["realized_profit"] = round(record["realized_profit"] + profit, 8)
        if final:
            record.update(is_open=False, close_rate=rate, exit_reason=reason,
                          close_timestamp=int(now.timestamp() * 1000),
                          close_profit_abs=record["realized_profit"])
        else:
            record["amount"] = round(record["amount"] - part, 8)
        body = {"event": "exit_fill", "secret": self.connected.secret,
                "trade_id": str(trade_id), "pair": record["pair"],
                "direction": "Short" if record["is_short"] else "Long", "amount": str(part),
                "open_rate": str(record["open_rate"]),
                "open_date": rendered_time(datetime.fromtimestamp(
                    record["open_timestamp"] / 1000, UTC)),
                "close_rate": str(rate), "close_date": rendered_time(now),
                "exit_reason": reason, "profit_amount": str(profit),
                "profit_ratio": str(round(profit / opened, 8)), "is_final_exit": str(final)}
        self.webhook(body)
        return body

    # --- the REST API the platform calls (bots.freqtrade.FreqtradeApi) ---------------

    def _unreachable(self) -> None:
        if self.state_text == "unreachable":
            raise BotApiError("show_config: could not connect", unreachable=True)

    def state(self) -> str:
        self.calls.append(("state", None))
        self._unreachable()
        return self.state_text

    def open_trades(self) -> list[dict[str, Any]]:
        self.calls.append(("status", None))
        self._unreachable()
        return [dict(r) for r in self.trades.values() if r["is_open"]]

    def trade(self, trade_id: int) -> dict[str, Any]:
        self.calls.append(("trade", trade_id))
        self._unreachable()
        if trade_id not in self.trades:
            raise BotApiError("trade: Trade not found.", not_found=True)
        return dict(self.trades[trade_id])

    def forceexit(self, trade_id: int) -> str:
        self.calls.append(("forceexit", trade_id))
        if self.forceexit_mode == "unreachable":
            raise BotApiError("forceexit: could not connect", unreachable=True)
        if self.forceexit_mode == "refuse" or not self.trades.get(trade_id, {}).get("is_open"):
            raise BotApiError("forceexit: Error querying /api/v1/forceexit: invalid argument")
        if self.forceexit_mode == "fill":
            self.leave(trade_id, reason="force_exit")
        return f"Created exit order for trade {trade_id}."


@pytest.fixture
def bot(monkeypatch, web, connected, clock) -> ScriptedBot:
    scripted = ScriptedBot(web, connected, clock)
    monkeypatch.setattr(freqtrade, "bot_api_for", lambda connection: scripted)
    return scripted
