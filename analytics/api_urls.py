"""API routes of this app, mounted under /api/."""

from django.urls import path

from analytics.api import (
    EquityView,
    ExecutionView,
    ExposureView,
    PerformanceView,
    TradeListView,
)
from analytics.overview_api import (
    AccountBalancesView,
    ProfitTableView,
    StrategySummaryView,
    TradeExportView,
)

urlpatterns = [
    path("analytics/performance", PerformanceView.as_view(), name="analytics-performance"),
    path("analytics/equity", EquityView.as_view(), name="analytics-equity"),
    path("analytics/trades", TradeListView.as_view(), name="analytics-trades"),
    path("analytics/trades/export", TradeExportView.as_view(), name="analytics-trades-export"),
    path("analytics/profit", ProfitTableView.as_view(), name="analytics-profit"),
    path("analytics/strategies", StrategySummaryView.as_view(), name="analytics-strategies"),
    path("analytics/accounts", AccountBalancesView.as_view(), name="analytics-accounts"),
    path("analytics/execution", ExecutionView.as_view(), name="analytics-execution"),
    path("analytics/exposure", ExposureView.as_view(), name="analytics-exposure"),
]
