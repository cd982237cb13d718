from django.apps import AppConfig


class GuardConfig(AppConfig):
    """The portfolio guard: trading states per scope, one pre-trade gate, trips on live equity.

    It sits above risk: execution, lifecycle and the platform's halt reach it only
    through what it registers here.
    """

    name = "guard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from execution import handlers
        from guard import receivers, services
        from guard.checks import account_override_errors
        from guard.gate import gate_order
        from lifecycle.models import Position
        from lifecycle.signals import position_opened
        from tradingsite.checks import register_override_check
        from tradingsite.services import register_global_state_writer

        handlers.register(pretrade_gate=gate_order, order_refusal_store=services.refusal_store)
        register_global_state_writer(services.global_state_set)
        register_override_check("accounts' portfolio limits", account_override_errors)
        position_opened.connect(receivers.position_opened_outside_the_gate,
                                dispatch_uid="guard.position_opened_outside_the_gate")
        post_save.connect(receivers.position_saved, sender=Position,
                          dispatch_uid="guard.position_saved")
