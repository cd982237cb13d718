from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Platform operations on top of the apps: runtime, shutdown, recovery, operator API."""

    name = "operations"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import worker_ready, worker_shutting_down

        from lifecycle.signals import positions_need_reconcile
        from operations.recovery import on_worker_ready
        from operations.runtime import services_start_in_worker, services_stop_in_worker
        from operations.shutdown import on_worker_shutting_down
        from operations.tasks import dispatch_position_reconciles

        # Production Celery workers (the CLI worker; runplatform recovers in its startup hook).
        worker_ready.connect(on_worker_ready, dispatch_uid="tradingsite.recovery")
        worker_shutting_down.connect(on_worker_shutting_down, dispatch_uid="tradingsite.shutdown")
        # ... and host the account streams and the deadline scheduler (PLATFORM_SERVICES).
        worker_ready.connect(services_start_in_worker, dispatch_uid="operations.services")
        worker_shutting_down.connect(services_stop_in_worker,
                                     dispatch_uid="operations.services_stop")
        # Positions the timeout pass left alone: reconciled on their account's queue.
        positions_need_reconcile.connect(dispatch_position_reconciles,
                                         dispatch_uid="tradingsite.reconcile_positions")
