from django.apps import AppConfig


class GuardConfig(AppConfig):
    """The portfolio guard: trading states per scope, one pre-trade gate, trips on live equity.

    It sits above risk: execution, lifecycle and the platform's halt reach it only
    through what it registers here.
    """

    name = "guard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from execution.gates import register_pretrade_gate, register_refusal_recorder
        from guard import services
        from guard.gate import gate_order
        from tradingsite.services import register_global_state_writer

        register_pretrade_gate(gate_order)
        register_refusal_recorder(services.refusal_store)
        register_global_state_writer(services.global_state_set)
