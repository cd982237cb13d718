"""ASGI entry point: Django over HTTP, the live channel over websockets."""

import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
if not settings.configured:
    # Each HTTP request runs its sync code in a thread of its own: on PostgreSQL a pool
    # keeps connections across requests (DATABASE_POOL=0 turns it off, e.g. behind pgbouncer).
    os.environ.setdefault("DATABASE_POOL", "1")
django.setup(set_prefix=False)


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler with its middleware chain run synchronously, in one hop to the
    request's thread.

    The views and most middleware here are synchronous. In Django's async mode every
    sync-capable middleware crosses into the request's thread and back for its request
    and its response part, and a sync-only one (WhiteNoise, ours) turns the chain back
    into async: some twenty hops, ~1.5 ms a request measured here. This handler loads the
    chain as WSGI would and runs it in one hop; request parsing, the started/finished
    signals and the response stay Django's own.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: Any) -> Any:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


django_asgi_app = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from tradingsite.routing import websocket_urlpatterns  # noqa: E402
from tradingsite.websocket import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    # The Origin must be this site's own (scheme, host and port) or a CSRF trusted origin.
    "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
})
