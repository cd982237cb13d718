from django.contrib import admin

from analytics.models import MetricSnapshot
from tradingsite.admin_helpers import AppendOnlyAdmin


@admin.register(MetricSnapshot)
class MetricSnapshotAdmin(AppendOnlyAdmin):
    list_display = ("period", "scope", "window_start", "trade_count", "last_trade_id",
                    "computed_at")
    list_filter = ("period",)
    search_fields = ("scope",)
