"""API routes of this app, mounted under /api/."""

from django.urls import path

from risk import api

urlpatterns = [
    path("health/position-health", api.PositionHealthView.as_view(), name="risk-position-health"),
    path("health/report", api.HealthReportView.as_view(), name="risk-health-report"),
    path("health/alerts", api.RiskAlertListView.as_view(), name="risk-alerts"),
    path("health/alerts/<id:pk>", api.RiskAlertDetailView.as_view(), name="risk-alert"),
    path("health/alerts/<id:pk>/acknowledge", api.AcknowledgeAlertView.as_view(),
         name="risk-alert-acknowledge"),
]
