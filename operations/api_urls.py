"""Routes of the platform API (strategies, positions, close requests, trading halt)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from operations import api

router = SimpleRouter(use_regex_path=False)
router.register("strategies", api.StrategyViewSet, basename="strategy")
router.register("positions", api.PositionViewSet, basename="position")

urlpatterns = [
    path("trading/halt/", api.TradingHaltView.as_view(), name="trading-halt"),
    path("trading/resume/", api.TradingResumeView.as_view(), name="trading-resume"),
    path("actions/", api.ActionRequestView.as_view(), name="action-request"),
    *router.urls,
]
