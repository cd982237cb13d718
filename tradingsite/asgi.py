"""ASGI entry point: Django over HTTP, the live channel over websockets."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
if not settings.configured:
    # Each HTTP request runs its sync code in a thread of its own: on PostgreSQL a pool
    # keeps connections across requests (DATABASE_POOL=0 turns it off, e.g. behind pgbouncer).
    os.environ.setdefault("DATABASE_POOL", "1")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from tradingsite.routing import websocket_urlpatterns  # noqa: E402
from tradingsite.websocket import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    # The Origin must be this site's own (scheme, host and port) or a CSRF trusted origin.
    "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
