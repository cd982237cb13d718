"""Routes of the guard API (``/api/guard/…``)."""

from django.urls import path

from guard import api

urlpatterns = [
    path("guard/", api.GuardOverviewApi.as_view(), name="guard-overview"),
    path("guard/state", api.GuardStateApi.as_view(), name="guard-state"),
    path("guard/trips", api.TripListApi.as_view(), name="guard-trips"),
    path("guard/refusals", api.RefusalListApi.as_view(), name="guard-refusals"),
]
