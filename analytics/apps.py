from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AnalyticsConfig(AppConfig):
    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from analytics.signals import trade_deleted, trade_saved
        from lifecycle.models import Trade

        post_save.connect(trade_saved, sender=Trade, dispatch_uid="analytics.trade_saved")
        post_delete.connect(trade_deleted, sender=Trade, dispatch_uid="analytics.trade_deleted")
