from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from execution.signals import account_marks, account_positions_read, account_symbols_wanted
        from lifecycle.checks import strategy_override_errors
        from lifecycle.models import Strategy
        from lifecycle.order_events import register_handlers
        from lifecycle.receivers import (
            compare_book,
            mark_positions,
            symbols_of_held_positions,
            wake_deadline_schedulers,
        )
        from lifecycle.signals import position_opened
        from tradingsite.checks import register_override_check

        register_override_check("strategies", strategy_override_errors)
        # Execution's hooks (fills open and close positions, close actions run here): in
        # every process that loads the apps — web, worker, beat, management commands.
        register_handlers()
        # What the account streams announce (execution.signals): marks, the exchange's book.
        account_symbols_wanted.connect(symbols_of_held_positions,
                                       dispatch_uid="lifecycle.symbols_of_held_positions")
        account_marks.connect(mark_positions, dispatch_uid="lifecycle.mark_positions")
        account_positions_read.connect(compare_book, dispatch_uid="lifecycle.compare_book")
        position_opened.connect(wake_deadline_schedulers, dispatch_uid="lifecycle.wake_opened")
        post_save.connect(wake_deadline_schedulers, sender=Strategy,
                          dispatch_uid="lifecycle.wake_strategy_saved")
