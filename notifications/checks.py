"""Start-up checks: a bad NOTIFY_URLS stops start-up naming the item, never showing the URL.

A secret variable that is not set in this process is only a warning: a notification
channel must never keep trading from starting (messages to it fail, visibly, until set).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from notifications.channels import (
    ChannelConfigError,
    MissingVariable,
    check_url,
    parse_notify_urls,
    resolve,
)

HINT = "See README, Notifications and the watchdog."


@register("notifications")
def check_notify_urls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for variable in ("NOTIFY_URLS", "WATCHDOG_NOTIFY_URLS"):
        try:
            channels = parse_notify_urls(getattr(settings, variable, ""), variable=variable)
        except ChannelConfigError as exc:
            problems.append(Error(str(exc), hint=HINT, id="notifications.E001"))
            continue
        for number, channel in enumerate(channels, start=1):
            where = f"{variable} item {number} ({channel.name})"
            problems += [Error(f"{where}: {message}", hint=HINT, id="notifications.E002")
                         for message in check_url(channel.url, missing_ok=True)]
            try:
                resolve(channel.url)
            except MissingVariable as exc:
                problems.append(Warning(f"{where}: {exc}; messages to it fail until it is set",
                                        id="notifications.W001"))
            except ChannelConfigError:
                pass  # reported above
    return problems
