"""API routes of this app, mounted under /api/."""

from django.urls import path

from analytics.api import (
    EquityView,
    ExecutionView,
    ExposureView,
    PerformanceView,
    TradeListView,
)

urlpatterns = [
    path("analytics/performance", PerformanceView.as_view(), name="analytics-performance"),
    path("analytics/equity", EquityView.as_view(), name="analytics-equity"),
    path("analytics/trades", TradeListView.as_view(), name="analytics-trades"),
    path("analytics/execution", ExecutionView.as_view(), name="analytics-execution"),
    path("analytics/exposure", ExposureView.as_view(), name="analytics-exposure"),
]
