from django.contrib import admin

from risk.models import HealthSnapshot, RiskAlert
from tradingsite.admin_helpers import AppendOnlyAdmin


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
                    "acknowledged", "resolved_at")
    list_filter = ("severity", "kind", "acknowledged", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("message", "kind", "position__symbol")
    list_select_related = ("position",)
    date_hierarchy = "last_seen"
    readonly_fields = [f.name for f in RiskAlert._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
