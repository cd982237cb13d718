"""What the web layer adds for safety: a Content-Security-Policy and masked settings."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.debug import SafeExceptionReporterFilter

from tradingsite.env import mask_url

CSP_HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    """Sets ``settings.CSP_POLICY`` on every response that has none.

    The dashboard runs no inline script (its data travels in ``json_script`` blocks,
    its code in static modules), so ``script-src 'self'`` holds everywhere. Paths in
    ``CSP_INLINE_STYLE_PATHS`` (the admin, the API docs) also allow inline styles.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = settings.CSP_POLICY
        self.relaxed = self.policy.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
        self.relaxed_paths = tuple(settings.CSP_INLINE_STYLE_PATHS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if CSP_HEADER not in response:
            response[CSP_HEADER] = (self.relaxed if request.path.startswith(self.relaxed_paths)
                                    else self.policy)
        return response


class MaskingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also hiding connection settings and any password inside a URL.

    Used by error pages (development), error reports and ``diffsettings``.
    """

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|REDIS_URL|BROKER|NOTIFY|"
        "RESULT_BACKEND|DATABASES|CHANNEL_LAYERS|CACHES", flags=re.I)

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            return mask_url(value)
        return value


def masked_settings(names: dict[str, Any]) -> dict[str, Any]:
    """Settings as an operator may see them (``diffsettings``)."""
    reporter = MaskingExceptionReporterFilter()
    return {key: reporter.cleanse_setting(key, value) for key, value in names.items()}
