from django.contrib import admin

from analytics.models import MetricSnapshot, RealisedPnlCheckpoint
from tradingsite.admin_helpers import AppendOnlyAdmin


@admin.register(MetricSnapshot)
class MetricSnapshotAdmin(AppendOnlyAdmin):
    list_display = ("period", "scope", "window_start", "trade_count", "last_trade_id",
                    "computed_at")
    list_filter = ("period",)
    search_fields = ("scope",)


@admin.register(RealisedPnlCheckpoint)
class RealisedPnlCheckpointAdmin(AppendOnlyAdmin):
    list_display = ("scope", "before", "realised_pnl", "computed_at")
    search_fields = ("scope",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return bool(request.user.is_staff)  # a cache: deleting it is always safe
