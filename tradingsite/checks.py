"""Start-up validation: a bad live-trading value stops start-up and names the key."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register
from django.db import DatabaseError

from tradingsite.live_config import LiveConfigError, LiveTradingConfig, build, clear_cache, site_layers


@register("live_trading")
def check_live_trading_config(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    clear_cache()
    try:
        site = build(site_layers())
    except LiveConfigError as exc:
        return [Error(f"{key}: {msg}", hint="Fix the live-trading configuration "
                      "(LIVE_TRADING_CONFIG, LIVE_TRADING__* variables or the config file).",
                      id="live_trading.E001") for key, msg in exc.errors]
    return _strategy_errors(site)


def _strategy_errors(site: LiveTradingConfig) -> list[Error]:
    """Each strategy's overrides on top of the site config, when the table exists."""
    from lifecycle.models import Strategy

    try:
        strategies = list(Strategy.objects.only("name", "live_trading").exclude(live_trading={}))
    except DatabaseError:  # not migrated yet, or no database: nothing to check here
        return []
    errors = []
    for strategy in strategies:
        try:
            build([("", strategy.live_trading)], base=site, strategy=True)
        except LiveConfigError as exc:
            errors.extend(Error(f"strategy {strategy.name!r}: {key}: {msg}",
                                id="live_trading.E002") for key, msg in exc.errors)
    return errors
