from django.apps import AppConfig


class RiskConfig(AppConfig):
    name = "risk"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from execution import handlers
        from lifecycle.models import Strategy
        from lifecycle.signals import position_closed, positions_marked
        from risk.receivers import (
            create_risk_check_row,
            recompute_danger_on_marks,
            resolve_alerts_of_closed_position,
        )
        from risk.services import (
            account_alert_raise,
            account_alert_resolve,
            account_alert_subjects,
            order_alert_raise,
        )

        position_closed.connect(resolve_alerts_of_closed_position,
                                dispatch_uid="risk.resolve_alerts_of_closed_position")
        positions_marked.connect(recompute_danger_on_marks,
                                 dispatch_uid="risk.recompute_danger_on_marks")
        post_save.connect(create_risk_check_row, sender=Strategy,
                          dispatch_uid="risk.create_risk_check_row")
        # Execution's alerts about orders (slippage, unknown, reappeared, unapplied fills).
        handlers.register(order_alert=order_alert_raise)
        # ... and about accounts' books (untracked positions, external closes, mismatches).
        handlers.register(account_alert=account_alert_raise,
                          account_alert_resolve=account_alert_resolve,
                          account_alert_subjects=account_alert_subjects)
