"""The audit log through the API: ``GET /api/audit/`` (staff only, newest first, filterable)
and ``GET /api/audit/csv`` (the same rows as CSV, oldest first, streamed).

Rows are never changed; these are reads. The admin's *Download as CSV* action writes the
same CSV (``tradingsite.audit.audit_csv``).
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tradingsite.api_base import ReadModelSerializer
from tradingsite.api_input import (
    StrictApi,
    StrictCharField,
    StrictDateTimeField,
    StrictQuerySerializer,
)
from tradingsite.audit import audit_csv
from tradingsite.models import AuditEvent


class IsStaff(BasePermission):
    """Who did what is for staff: reads too."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class AuditEventSerializer(ReadModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "action", "target_type", "target_id",
                  "target_repr", "before", "after", "reason"]
        read_only_fields = fields


class AuditFilterSerializer(StrictQuerySerializer):
    action = StrictCharField(required=False, max_length=64,
                             help_text="e.g. trading_state.set, order.refused")
    actor = StrictCharField(required=False, max_length=150)
    target_type = StrictCharField(required=False, max_length=100,
                                  help_text="app_label.model, e.g. guard.tradingscope")
    target_id = StrictCharField(required=False, max_length=64)
    since = StrictDateTimeField(required=False, help_text="From this time (inclusive).")
    until = StrictDateTimeField(required=False, help_text="Before this time.")


def audit_events(params: dict) -> QuerySet[AuditEvent]:
    """The rows the filters name (unordered)."""
    events = AuditEvent.objects.all()
    for name in ("action", "actor", "target_type", "target_id"):
        if params.get(name):
            events = events.filter(**{name: params[name]})
    if params.get("since"):
        events = events.filter(created_at__gte=params["since"])
    if params.get("until"):
        events = events.filter(created_at__lt=params["until"])
    return events


class AuditListApi(StrictApi, generics.ListAPIView):
    """The audit log, newest first (staff): who, when, what, the changed fields before and
    after, and why. Filter by action, actor, target and time."""

    permission_classes = [IsStaff]
    serializer_class = AuditEventSerializer
    query_serializer_class = AuditFilterSerializer

    def get_queryset(self):
        return audit_events(self.params).order_by("-created_at", "-id")

    @extend_schema(tags=["audit"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class AuditCsvApi(StrictApi, APIView):
    """The audit log as CSV (staff), oldest first, with the list's filters; streamed, so any
    number of rows. ``before``/``after`` are JSON text; a cell a spreadsheet would run as a
    formula starts with ``'``."""

    permission_classes = [IsStaff]
    query_serializer_class = AuditFilterSerializer

    @extend_schema(tags=["audit"], responses={(200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR, description="id, created_at, actor, action, target_type, target_id, "
                                      "target_repr, before, after, reason")})
    def get(self, request: Request) -> StreamingHttpResponse:
        events = audit_events(self.params).order_by("created_at", "id").iterator(chunk_size=2000)
        response = StreamingHttpResponse(audit_csv(events), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response
