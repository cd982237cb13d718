"""Admin of the platform's operational state: halt, shutdown snapshots, reconciliation reports.

The models live in the core (``tradingsite``); their admin is here because its
actions run platform operations (the reconciliation).
"""

from django.contrib import admin, messages

from operations.recovery import recover
from tradingsite.admin_helpers import AppendOnlyAdmin
from tradingsite.models import PlatformState, ReconciliationReport, StateSnapshot
from tradingsite.services import trading_halt, trading_resume


@admin.register(PlatformState)
class PlatformStateAdmin(admin.ModelAdmin):
    list_display = ("__str__", "trading_halted", "halt_reason", "halted_by", "halted_at",
                    "shutdown_requested_at")
    readonly_fields = ("trading_halted", "halt_reason", "halted_at", "halted_by",
                       "shutdown_requested_at", "updated_at")
    actions = ["halt_trading", "resume_trading", "reconcile"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Halt trading (stop new entries)", permissions=["change"])
    def halt_trading(self, request, queryset) -> None:
        trading_halt(reason=f"halted from the admin by {request.user.get_username()}",
                     actor=request.user.get_username())
        self.message_user(request, "Trading halted: new entries are refused.", messages.WARNING)

    @admin.action(description="Resume trading", permissions=["change"])
    def resume_trading(self, request, queryset) -> None:
        trading_resume(actor=request.user.get_username())
        self.message_user(request, "Trading resumed.", messages.SUCCESS)

    @admin.action(description="Reconcile with the exchanges now", permissions=["change"])
    def reconcile(self, request, queryset) -> None:
        report = recover(trigger=f"admin ({request.user.get_username()})")
        self.message_user(request, f"Reconciliation report #{report.pk}: {report.summary}",
                          messages.SUCCESS if report.differences == 0 else messages.WARNING)


@admin.register(StateSnapshot)
class StateSnapshotAdmin(AppendOnlyAdmin):
    list_display = ("created_at", "reason", "clean")
    list_filter = ("reason", "clean")


@admin.register(ReconciliationReport)
class ReconciliationReportAdmin(AppendOnlyAdmin):
    list_display = ("created_at", "dry_run", "differences", "summary")
    list_filter = ("dry_run",)
