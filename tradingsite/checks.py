"""Start-up validation: a bad live-trading value stops start-up and names the key.

The site configuration is checked here; the apps above add checks of what they hold on
top of it (``lifecycle.checks``: each strategy's overrides) with ``register_override_check``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.checks import Error, register

from tradingsite.live_config import (
    LiveConfigError,
    LiveTradingConfig,
    build,
    clear_cache,
    site_layers,
)

OverrideCheck = Callable[[LiveTradingConfig], list[Error]]
_override_checks: dict[str, OverrideCheck] = {}


def register_override_check(name: str, check: OverrideCheck) -> None:
    """Add a check of overrides on top of a valid site config (``AppConfig.ready``)."""
    _override_checks[name] = check


@register("live_trading")
def check_live_trading_config(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    clear_cache()
    try:
        site = build(site_layers())
    except LiveConfigError as exc:
        return [Error(f"{key}: {msg}", hint="Fix the live-trading configuration "
                      "(LIVE_TRADING_CONFIG, LIVE_TRADING__* variables or the config file).",
                      id="live_trading.E001") for key, msg in exc.errors]
    return [error for check in _override_checks.values() for error in check(site)]
