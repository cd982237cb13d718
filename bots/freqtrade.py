"""The freqtrade REST API, through ``freqtrade-client``, with one error type.

``FtRestClient`` answers a refused call with a body (``{"error": …}``,
``{"detail": "Unauthorized"}``), an unreachable bot with ``None`` and a timeout with
a ``requests`` exception; all of them become ``BotApiError`` here, which says whether
the bot could be reached at all. Credentials come from the connection's environment
variables and are never logged (the error texts carry no request).
"""

from __future__ import annotations

from typing import Any

import requests
from freqtrade_client import FtRestClient

from bots.models import BotConnection

API_TIMEOUT_SECONDS = 10
TRADE_NOT_FOUND = "Trade not found."


class BotApiError(Exception):
    """The bot did not do what was asked; ``unreachable``: it did not answer at all."""

    def __init__(self, message: str, *, unreachable: bool = False, not_found: bool = False):
        super().__init__(message)
        self.unreachable = unreachable
        self.not_found = not_found


class FreqtradeApi:
    """The calls the platform makes to a freqtrade bot."""

    def __init__(self, connection: BotConnection, *, timeout: float = API_TIMEOUT_SECONDS):
        if errors := connection.routing_errors():
            raise BotApiError("; ".join(errors))
        user, password = connection.credentials()
        if not (user and password):
            raise BotApiError(f"credentials missing: {connection.credentials_status()}")
        self.client = FtRestClient(connection.api_url.rstrip("/"), user, password,
                                   timeout=timeout)

    def _call(self, name: str, *args: Any) -> Any:
        try:
            answer = getattr(self.client, name)(*args)
        except requests.Timeout:
            raise BotApiError(f"{name}: no answer within the timeout", unreachable=True) from None
        except requests.RequestException as exc:
            raise BotApiError(f"{name}: {type(exc).__name__}", unreachable=True) from None
        except ValueError:  # a body that is not JSON (a proxy's error page)
            raise BotApiError(f"{name}: the answer is not JSON") from None
        if answer is None:
            raise BotApiError(f"{name}: could not connect", unreachable=True)
        if isinstance(answer, dict) and ("error" in answer or "detail" in answer):
            text = str(answer.get("error") or answer.get("detail"))[:300]
            raise BotApiError(f"{name}: {text}", not_found=text == TRADE_NOT_FOUND)
        return answer

    def state(self) -> str:
        """``running``, ``paused`` or ``stopped``."""
        answer = self._call("show_config")
        state = answer.get("state") if isinstance(answer, dict) else None
        if not isinstance(state, str):
            raise BotApiError("show_config: no state in the answer")
        return state

    def open_trades(self) -> list[dict[str, Any]]:
        answer = self._call("status")
        if not isinstance(answer, list) or not all(isinstance(t, dict) for t in answer):
            raise BotApiError("status: not a list of trades")
        return answer

    def trade(self, trade_id: int) -> dict[str, Any]:
        """One trade's record, open or closed (``BotApiError.not_found`` when the bot has none)."""
        answer = self._call("trade", trade_id)
        if not isinstance(answer, dict):
            raise BotApiError("trade: not a trade record")
        return answer

    def forceexit(self, trade_id: int) -> str:
        """Ask the bot to exit the whole trade at market; returns its confirmation text."""
        answer = self._call("forceexit", trade_id)
        return str(answer.get("result", "")) if isinstance(answer, dict) else str(answer)


def bot_api_for(connection: BotConnection) -> FreqtradeApi:
    """The API of a connection's bot (tests replace this with a scripted bot)."""
    return FreqtradeApi(connection)


# --- the webhook block of the bot's config ------------------------------------------------

_TRADE = {"trade_id": "{trade_id}", "pair": "{pair}", "direction": "{direction}",
          "amount": "{amount}"}
_OPENED = {"open_rate": "{open_rate}", "open_date": "{open_date}"}
WEBHOOK_TEMPLATES: dict[str, dict[str, str]] = {
    "entry": {**_TRADE, **_OPENED},
    "entry_fill": {**_TRADE, **_OPENED},
    "entry_cancel": {**_TRADE, **_OPENED, "reason": "{reason}"},
    "exit": {**_TRADE, "order_rate": "{order_rate}", "exit_reason": "{exit_reason}"},
    "exit_fill": {**_TRADE, **_OPENED, "close_rate": "{close_rate}", "close_date": "{close_date}",
                  "exit_reason": "{exit_reason}", "profit_amount": "{profit_amount}",
                  "profit_ratio": "{profit_ratio}", "is_final_exit": "{is_final_exit}"},
    "exit_cancel": {**_TRADE, "exit_reason": "{exit_reason}", "reason": "{reason}"},
    "status": {"status": "{status}"},
}


def webhook_path(connection: BotConnection) -> str:
    return f"/api/bots/{connection.name}/webhook"


def webhook_block(connection: BotConnection, *, secret: str, base_url: str) -> dict[str, Any]:
    """The ``webhook`` section of the bot's config, ready to paste (README shows it too).

    JSON format (every value arrives as a string), the secret in each template (the
    bot cannot add a header), a few retries (the receiver is idempotent) and a short
    timeout: the bot waits for each webhook before it goes on.
    """
    return {"webhook": {
        "enabled": True, "url": base_url.rstrip("/") + webhook_path(connection),
        "format": "json", "retries": 3, "retry_delay": 0.2, "timeout": 5,
        **{event: {"event": event, "secret": secret, **fields}
           for event, fields in WEBHOOK_TEMPLATES.items()},
    }}
