from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from lifecycle.checks import strategy_override_errors
        from lifecycle.order_events import register_handlers
        from tradingsite.checks import register_override_check

        register_override_check("strategies", strategy_override_errors)
        # Execution's hooks (fills open and close positions, close actions run here): in
        # every process that loads the apps — web, worker, beat, management commands.
        register_handlers()
