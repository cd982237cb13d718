"""``GET /healthz``: no login, no trading data; 200 when every component is ok, else 503."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from notifications.health import FAILING, cached_health

ALLOWED = ("GET", "HEAD")


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    if request.method not in ALLOWED:
        response = JsonResponse({"detail": f"Method {request.method!r} not allowed.",
                                 "code": "method_not_allowed"}, status=405)
        response["Allow"] = ", ".join(ALLOWED)
        return response
    if request.GET:
        return JsonResponse({"detail": "/healthz takes no query parameters: "
                                       + ", ".join(sorted(request.GET)),
                             "code": "unknown_parameter"}, status=400)
    report = cached_health()
    return JsonResponse(report, status=503 if report["status"] == FAILING else 200)
