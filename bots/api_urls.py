"""API routes of this app, mounted under /api/."""

from django.urls import path

from bots import api

urlpatterns = [
    path("bots/connections", api.BotConnectionListApi.as_view(), name="bot-connections"),
    path("bots/connections/<id:connection_id>", api.BotConnectionDetailApi.as_view(),
         name="bot-connection"),
    path("bots/connections/<id:connection_id>/rotate-secret",
         api.RotateWebhookSecretApi.as_view(), name="bot-connection-rotate-secret"),
    path("bots/<slug:name>/webhook", api.BotWebhookApi.as_view(), name="bot-webhook"),
    path("signals/<slug:strategy>", api.TradeSignalApi.as_view(), name="trade-signal"),
]
