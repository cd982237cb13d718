"""Exchange adapters: one interface (``base.Exchange``), ccxt and paper implementations."""

from __future__ import annotations

from typing import Any

from execution.exchanges.base import Exchange


def exchange_for(account: Any) -> Exchange:
    """The exchange an account's orders go to: its paper book or a ccxt client."""
    if account.is_paper:
        from execution.exchanges.paper import paper_exchange_for

        return paper_exchange_for(account)
    from execution.exchanges.ccxt_exchange import CcxtExchange

    return CcxtExchange.from_account(account)
