"""Start-up validation of each strategy's live-trading overrides on top of the site config.

Registered with ``tradingsite.checks`` (``lifecycle.apps``), which runs it once the site
config itself is valid.
"""

from __future__ import annotations

from django.core.checks import Error
from django.db import DatabaseError

from lifecycle.models import Strategy
from tradingsite.live_config import LiveConfigError, LiveTradingConfig, build


def strategy_override_errors(site: LiveTradingConfig) -> list[Error]:
    """Each strategy's overrides on top of the site config, when the table exists."""
    try:
        strategies = list(Strategy.objects.only("name", "live_trading").exclude(live_trading={}))
    except DatabaseError:  # not migrated yet, or no database: nothing to check here
        return []
    errors = []
    for strategy in strategies:
        try:
            build([("", strategy.live_trading)], base=site)
        except LiveConfigError as exc:
            errors.extend(Error(f"strategy {strategy.name!r}: {key}: {msg}",
                                id="live_trading.E002") for key, msg in exc.errors)
    return errors
