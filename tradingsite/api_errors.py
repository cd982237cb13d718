"""JSON errors for the API: field messages on 400, 409 for invalid transitions.

A filter value the database cannot hold (an id beyond 64 bits, a time zone offset
PostgreSQL refuses) is the client's error, answered 400 rather than 500. A body
beyond Django's upload limit is a 413. ``JsonErrorsMiddleware`` makes sure that
every error under /api/ is JSON, whoever produced it (Django's own 400/403/404/500
pages, a debug page).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tradingsite.errors import DomainError, RequestMismatch

API_PREFIX = "/api/"
OUT_OF_RANGE = {"detail": "A value in the request is out of the range the database accepts.",
                "code": "out_of_range"}
TOO_LARGE = {"detail": "The request body is too large.", "code": "payload_too_large"}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestMismatch):
        return Response({"detail": str(exc), "code": exc.code, "fields": exc.fields},
                        status=exc.http_status)
    if isinstance(exc, DomainError):
        return Response({"detail": str(exc), "code": exc.code, **exc.details()},
                        status=exc.http_status)
    if isinstance(exc, (DataError, OverflowError)):
        return Response(OUT_OF_RANGE, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response(TOO_LARGE, status=413)
    return drf_exception_handler(exc, context)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() == "application/json"


class JsonErrorsMiddleware:
    """Under /api/, an error answer that is not JSON becomes ``{"detail", "code"}`` JSON.

    Outermost, so it also sees what other middleware answer; headers such as
    ``Allow`` and ``WWW-Authenticate`` are kept.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (response.status_code < 400 or not request.path.startswith(API_PREFIX)
                or _is_json(response)):
            return response
        try:
            known = HTTPStatus(response.status_code)
            body = {"detail": f"{known.phrase}.", "code": known.name.lower()}
        except ValueError:
            body = {"detail": f"HTTP {response.status_code}.", "code": "error"}
        replaced = JsonResponse(body, status=response.status_code)
        for header, value in response.items():
            if header.lower() not in ("content-type", "content-length"):
                replaced[header] = value
        return replaced
