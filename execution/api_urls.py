"""API routes of this app, mounted under /api/."""

from django.urls import path

from execution.api import (
    AccountListApi,
    ActionListApi,
    CancelOrderApi,
    OrderDetailApi,
    OrderListApi,
)

urlpatterns = [
    path("execution/orders", OrderListApi.as_view(), name="execution-orders"),
    path("execution/orders/<id:pk>", OrderDetailApi.as_view(), name="execution-order"),
    path("execution/orders/<id:order_id>/cancel", CancelOrderApi.as_view(),
         name="execution-order-cancel"),
    path("execution/actions", ActionListApi.as_view(), name="execution-actions"),
    path("execution/accounts", AccountListApi.as_view(), name="execution-accounts"),
]
