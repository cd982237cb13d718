from django.apps import AppConfig


class RiskConfig(AppConfig):
    name = "risk"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from lifecycle.signals import position_closed
        from risk.receivers import resolve_alerts_of_closed_position

        position_closed.connect(resolve_alerts_of_closed_position,
                                dispatch_uid="risk.resolve_alerts_of_closed_position")
