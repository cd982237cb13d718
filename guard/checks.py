"""Start-up validation of each account's portfolio limits on top of the site config.

Registered with ``tradingsite.checks`` (``guard.apps``), which runs it once the site
config itself is valid; a row edited behind the validator's back is named at start-up.
"""

from __future__ import annotations

from django.core.checks import Error
from django.db import DatabaseError

from guard.models import ScopeKind, TradingScope
from tradingsite.live_config import LiveConfigError, LiveTradingConfig, build


def account_override_errors(site: LiveTradingConfig) -> list[Error]:
    """Each account scope's ``portfolio`` overrides on top of the site config."""
    try:
        scopes = list(TradingScope.objects.filter(kind=ScopeKind.ACCOUNT).exclude(portfolio={})
                      .select_related("account"))
    except DatabaseError:  # not migrated yet, or no database: nothing to check here
        return []
    errors = []
    for scope in scopes:
        try:
            build([("", {"portfolio": scope.portfolio})], base=site)
        except LiveConfigError as exc:
            errors.extend(Error(f"account {scope.account.name!r}: {key}: {msg}",
                                id="live_trading.E003") for key, msg in exc.errors)
    return errors
