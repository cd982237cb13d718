from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from execution.signals import account_marks, account_positions_read, account_symbols_wanted
        from lifecycle.receivers import compare_book, mark_positions, symbols_of_held_positions

        account_symbols_wanted.connect(symbols_of_held_positions,
                                       dispatch_uid="lifecycle.symbols_of_held_positions")
        account_marks.connect(mark_positions, dispatch_uid="lifecycle.mark_positions")
        account_positions_read.connect(compare_book, dispatch_uid="lifecycle.compare_book")
