from django.apps import AppConfig


class BotsConfig(AppConfig):
    """Trading bots the platform supervises: their positions close through the bot that owns them."""

    name = "bots"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bots.closing import bot_close
        from lifecycle.close_executors import register_close_executor
        from lifecycle.models import PositionSource

        register_close_executor(PositionSource.BOT, bot_close)
