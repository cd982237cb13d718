"""JSON errors for the API: field messages on 400, 409 for invalid transitions.

A filter value the database cannot hold (an id beyond 64 bits, a time zone offset
PostgreSQL refuses) is the client's error, answered 400 rather than 500.
"""

from __future__ import annotations

from typing import Any

from django.db import DataError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tradingsite.errors import DomainError, RequestMismatch

OUT_OF_RANGE = {"detail": "A value in the request is out of the range the database accepts.",
                "code": "out_of_range"}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestMismatch):
        return Response({"detail": str(exc), "code": exc.code, "fields": exc.fields},
                        status=exc.http_status)
    if isinstance(exc, DomainError):
        return Response({"detail": str(exc), "code": exc.code}, status=exc.http_status)
    if isinstance(exc, (DataError, OverflowError)):
        return Response(OUT_OF_RANGE, status=400)
    return drf_exception_handler(exc, context)
