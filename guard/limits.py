"""Which ``liveTrading.portfolio`` limits apply to a scope, validated by the one validator.

The site's ``portfolio`` section holds the platform's own limits and the default of
every account and strategy. An account's overrides live on its scope row
(``TradingScope.portfolio``), a strategy's in its ``live_trading`` overrides (only
``STRATEGY_PORTFOLIO_KEYS``). Each scope checks only the keys that make sense for it:

- platform: daily loss, drawdown, open positions, notional per order, orders per minute;
- account: every key (exposure is measured against the account's equity);
- strategy: open positions, notional per order, orders per minute.

An override that became invalid behind the validator's back (a row edited in the
database) does not stop trading: the scope falls back to the site's limits and the
error is logged, as the timeout pass does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from guard.models import ScopeKind, TradingScope
from tradingsite.live_config import (
    STRATEGY_PORTFOLIO_KEYS,
    LiveConfigError,
    LiveTradingConfig,
    PortfolioConfig,
    build,
    site_config,
)

log = logging.getLogger(__name__)

LOSS_KEYS = ("daily_loss_limit_amount", "daily_loss_limit_percent", "max_drawdown_percent")
# Keys the gate counts against the scope's ledger.
COUNTED_KEYS = ("max_open_positions", "max_orders_per_minute", "max_exposure_percent",
                "max_symbol_exposure_percent")
APPLIES = {
    ScopeKind.GLOBAL: (*LOSS_KEYS, "max_open_positions", "max_notional_per_order",
                       "max_orders_per_minute"),
    ScopeKind.ACCOUNT: (*LOSS_KEYS, "max_open_positions", "max_exposure_percent",
                        "max_symbol_exposure_percent", "max_notional_per_order",
                        "max_orders_per_minute"),
    ScopeKind.STRATEGY: STRATEGY_PORTFOLIO_KEYS,
}


@dataclass(frozen=True)
class ScopeLimits:
    """The limits a scope enforces (``None``: off) and what it does when it trips."""

    kind: str
    daily_loss_limit_amount: float | None = None
    daily_loss_limit_percent: float | None = None
    max_drawdown_percent: float | None = None
    max_open_positions: int | None = None
    max_exposure_percent: float | None = None
    max_symbol_exposure_percent: float | None = None
    max_notional_per_order: float | None = None
    max_orders_per_minute: int | None = None
    on_trip: str = "HALTED"
    close_all_on_trip: bool = False

    @property
    def counted(self) -> bool:
        """A limit counts what the scope holds: the gate takes the scope's ledger lock."""
        return any(getattr(self, key) is not None for key in COUNTED_KEYS)

    @property
    def trips(self) -> bool:
        return any(getattr(self, key) is not None for key in LOSS_KEYS)

    def configured(self) -> dict[str, Any]:
        """Every key that applies here with its value (``None`` when off)."""
        return {key: getattr(self, key) for key in APPLIES[self.kind]}


def _limits(kind: str, portfolio: PortfolioConfig) -> ScopeLimits:
    values = {key: getattr(portfolio, key) for key in APPLIES[kind]}
    if kind != ScopeKind.STRATEGY:
        values.update(on_trip=portfolio.on_trip, close_all_on_trip=portfolio.close_all_on_trip)
    return ScopeLimits(kind=kind, **values)


def account_portfolio_validate(overrides: Any, *, source: str) -> PortfolioConfig:
    """An account's overrides on top of the site config; ``LiveConfigError`` naming each key."""
    return build([(source, {"portfolio": overrides})], base=site_config()).portfolio


@lru_cache(maxsize=512)
def _account_portfolio(overrides_json: str, site: LiveTradingConfig, name: str
                       ) -> PortfolioConfig:
    try:
        return build([(f"account {name}", {"portfolio": json.loads(overrides_json)})],
                     base=site).portfolio
    except LiveConfigError as exc:
        log.error("account %s: invalid portfolio overrides (%s); its limits are the site's",
                  name, exc)
        return site.portfolio


def _strategy_portfolio(strategy: Any) -> PortfolioConfig:
    try:
        return strategy.effective_config().portfolio
    except LiveConfigError as exc:
        log.error("strategy %s: invalid live-trading overrides (%s); its limits are the site's",
                  strategy.name, exc)
        return site_config().portfolio


def scope_limits(scope: TradingScope, *, strategy: Any = None) -> ScopeLimits:
    """The limits of ``scope`` (``strategy``: the strategy of a strategy scope, loaded)."""
    site = site_config()
    if scope.kind == ScopeKind.GLOBAL:
        return _limits(ScopeKind.GLOBAL, site.portfolio)
    if scope.kind == ScopeKind.ACCOUNT:
        if not scope.portfolio:
            return _limits(ScopeKind.ACCOUNT, site.portfolio)
        return _limits(ScopeKind.ACCOUNT, _account_portfolio(
            json.dumps(scope.portfolio, sort_keys=True), site, scope.name))
    return _limits(ScopeKind.STRATEGY, _strategy_portfolio(strategy or scope.strategy))
