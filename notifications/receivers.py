"""The one seam between the platform and the outbox: receivers of the other apps' signals.

Every receiver runs inside the transaction of the event it hears (the alert's, the
timeout pass's, the order's final write) and records its notification there; the
platform's start and stop also start and stop the embedded watchdog. No other app
imports this one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from notifications import services

log = logging.getLogger(__name__)

STOP_DELIVERY_SECONDS = 5.0


def alerts_raised(sender: Any, alerts: list[Any], **kwargs: Any) -> None:
    services.notify_alerts(alerts)


def positions_moved(sender: Any, position_ids: list[int], to_state: str, at: Any = None,
                    **kwargs: Any) -> None:
    services.notify_positions_moved(position_ids, to_state, at=at)


def close_requested(sender: Any, position: Any, action: Any, reason: str, kind: str, actor: str,
                    note: str = "", **kwargs: Any) -> None:
    services.notify_close_requested(position=position, action=action, reason=reason, kind=kind,
                                    actor=actor, note=note)


def close_failed(sender: Any, position: Any, reason: str, actor: str, **kwargs: Any) -> None:
    services.notify_close_failed(position=position, reason=reason, actor=actor)


def position_closed(sender: Any, position: Any, trade: Any, **kwargs: Any) -> None:
    services.notify_position_closed(position=position, trade=trade)


def order_ended_unfilled(sender: Any, order: Any, **kwargs: Any) -> None:
    services.notify_order_unfilled(order)


def platform_started(sender: Any, mode: str, host: str, pid: int, details: str = "",
                     platform: Any = None, **kwargs: Any) -> None:
    services.notify_platform(kind="platform_started", mode=mode, host=host, pid=pid,
                             details=details)
    if platform is not None and settings.WATCHDOG_EMBEDDED:
        _start_embedded_watchdog(platform)


def platform_stopping(sender: Any, mode: str, host: str, pid: int, reason: str = "",
                      clean: bool = True, platform: Any = None, **kwargs: Any) -> None:
    """Record "stopping" and, in runplatform, send what is waiting before the worker stops."""
    services.notify_platform(kind="platform_stopping", mode=mode, host=host, pid=pid,
                             clean=clean, reason=reason)
    if platform is None:
        return  # a production worker: the others (or the next start) deliver it
    watchdog = getattr(platform, "watchdog", None)
    if watchdog is not None:
        platform.out("  watchdog:      " + ("stopped" if watchdog.stop() else
                                            "did not stop in time, abandoned"))
    from notifications.delivery import deliver_pass

    result = deliver_pass(deadline=time.monotonic() + STOP_DELIVERY_SECONDS)
    platform.out(f"  notifications: {result.sent} sent on the way out"
                 + (f", {result.failed_attempts} failed (kept for the next start)"
                    if result.failed_attempts else ""))


def _start_embedded_watchdog(platform: Any) -> None:
    from notifications.channels import ChannelConfigError, watchdog_channels
    from notifications.health import watchdog_config
    from notifications.watchdog import EmbeddedWatchdog, Watchdog, local_source

    try:
        channels = watchdog_channels()
    except ChannelConfigError as exc:
        platform.out(f"  watchdog:      not started: {exc}")
        return
    cfg = watchdog_config()
    watchdog = EmbeddedWatchdog(Watchdog(
        source=local_source, cfg=cfg, channels=channels,
        where=f"runplatform on port {platform.options.port}",
        out=lambda line: platform.out(f"  watchdog:      {line}")))
    watchdog.start()
    platform.watchdog = watchdog
    platform.out(f"  watchdog:      every {cfg.interval_seconds:g} s, in-process, "
                 f"{len(channels)} channel(s)"
                 + ("" if channels else " (set NOTIFY_URLS to be told)"))
