from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from risk.models import HealthSnapshot, RiskAlert, StrategyRiskCheck
from risk.services import alerts_acknowledge, risk_check_run
from tradingsite.admin_helpers import AppendOnlyAdmin, format_age


@admin.register(HealthSnapshot)
class HealthSnapshotAdmin(AppendOnlyAdmin):
    list_display = ("taken_at", "position", "score", "danger_level", "time_score",
                    "drawdown_score", "volume_score", "volatility_score", "profitability_score",
                    "data_complete")
    list_filter = ("danger_level", "data_complete")
    search_fields = ("position__symbol",)
    list_select_related = ("position",)
    date_hierarchy = "taken_at"


@admin.register(RiskAlert)
class RiskAlertAdmin(admin.ModelAdmin):
    list_display = ("last_seen", "severity", "kind", "position", "message", "occurrences",
                    "acknowledged", "acknowledged_by", "resolved_at")
    list_filter = ("severity", "kind", "acknowledged", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("message", "kind", "position__symbol")
    list_select_related = ("position",)
    date_hierarchy = "last_seen"
    readonly_fields = [f.name for f in RiskAlert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[RiskAlert]) -> None:
        count = alerts_acknowledge(alert_ids=list(queryset.values_list("pk", flat=True)),
                                   by=request.user.get_username())
        self.message_user(request, f"{count} alert(s) acknowledged by "
                                   f"{request.user.get_username()}.", messages.SUCCESS)


@admin.register(StrategyRiskCheck)
class StrategyRiskCheckAdmin(admin.ModelAdmin):
    list_display = ("strategy", "last_checked_at", "checked_ago", "positions_checked",
                    "duration_ms")
    list_select_related = ("strategy",)
    readonly_fields = ("strategy", "last_checked_at", "positions_checked", "duration_ms")
    actions = ["check_now"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Checked")
    def checked_ago(self, obj: StrategyRiskCheck) -> str:
        return f"{format_age(obj.last_checked_at)} ago" if obj.last_checked_at else "never"

    @admin.action(description="Run the risk check now", permissions=["change"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[StrategyRiskCheck]) -> None:
        result = risk_check_run(force=True,
                                strategy_ids=list(queryset.values_list("strategy_id", flat=True)))
        self.message_user(
            request, f"Checked {result.positions} position(s) of {len(result.strategies)} "
                     f"strategy(ies): {result.levels}; {result.alerts_raised} alert(s) raised, "
                     f"{len(result.closes_requested)} emergency close(s) requested.",
            messages.SUCCESS)
