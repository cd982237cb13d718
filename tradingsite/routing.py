from django.urls import path

from operations.consumers import LiveConsumer

websocket_urlpatterns = [path("ws/health/", LiveConsumer.as_asgi())]
