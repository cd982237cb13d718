from django.urls import path

from risk.consumers import LiveConsumer

websocket_urlpatterns = [path("ws/health/", LiveConsumer.as_asgi())]
