from django.apps import AppConfig


class TradingsiteConfig(AppConfig):
    """The shared core: configuration checks, the periodic-task registry, platform state."""

    name = "tradingsite"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from tradingsite import checks  # noqa: F401  (registers the system checks)
        from tradingsite.schedule import ensure_periodic_tasks

        post_migrate.connect(ensure_periodic_tasks, dispatch_uid="tradingsite.periodic_tasks")
