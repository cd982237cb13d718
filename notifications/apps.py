from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """On top of every other app: it listens to their signals; none of them imports it."""

    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from execution.signals import order_ended_unfilled
        from lifecycle.signals import close_failed, close_requested, position_closed, positions_moved
        from notifications import checks  # noqa: F401  (registers the system checks)
        from notifications import receivers as r
        from risk.signals import alerts_raised
        from tradingsite.signals import platform_started, platform_stopping

        for signal, receiver in ((alerts_raised, r.alerts_raised),
                                 (positions_moved, r.positions_moved),
                                 (close_requested, r.close_requested),
                                 (close_failed, r.close_failed),
                                 (position_closed, r.position_closed),
                                 (order_ended_unfilled, r.order_ended_unfilled),
                                 (platform_started, r.platform_started),
                                 (platform_stopping, r.platform_stopping)):
            signal.connect(receiver, dispatch_uid=f"notifications.{receiver.__name__}")
