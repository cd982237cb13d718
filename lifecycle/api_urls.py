"""API routes of this app, mounted under /api/."""

from django.urls import path

from lifecycle import api

urlpatterns = [
    path("lifecycle/tracked-positions", api.TrackedPositionsApi.as_view(),
         name="lifecycle-tracked-positions"),
    path("lifecycle/timeouts", api.TimeoutsApi.as_view(), name="lifecycle-timeouts"),
    path("lifecycle/positions", api.HandOverPositionApi.as_view(), name="lifecycle-positions"),
    path("lifecycle/positions/<id:position_id>/close", api.ClosePositionApi.as_view(),
         name="lifecycle-position-close"),
    # A strategy's entry order: routed with execution's order routes, answered here
    # because the strategy (and the position its fill opens) is lifecycle's.
    path("execution/orders/place", api.PlaceOrderApi.as_view(), name="execution-order-place"),
]
