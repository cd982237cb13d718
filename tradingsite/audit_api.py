"""The audit log through the API: ``GET /api/audit/`` (staff only, newest first, filterable).

Rows are never changed; this is a read. The CSV export is the admin's action
(*Audit events* → *Download as CSV*), over the same rows (``tradingsite.audit.audit_csv``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from tradingsite.api_base import ReadModelSerializer
from tradingsite.api_input import (
    StrictApi,
    StrictCharField,
    StrictDateTimeField,
    StrictQuerySerializer,
)
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


class AuditListApi(StrictApi, generics.ListAPIView):
    """The audit log, newest first (staff): who, when, what, the changed fields before and
    after, and why. Filter by action, actor, target and time."""

    permission_classes = [IsStaff]
    serializer_class = AuditEventSerializer

    class AuditFilterSerializer(StrictQuerySerializer):
        action = StrictCharField(required=False, max_length=64,
                                 help_text="e.g. trading_state.set, order.refused")
        actor = StrictCharField(required=False, max_length=150)
        target_type = StrictCharField(required=False, max_length=100,
                                      help_text="app_label.model, e.g. guard.tradingscope")
        target_id = StrictCharField(required=False, max_length=64)
        since = StrictDateTimeField(required=False, help_text="From this time (inclusive).")
        until = StrictDateTimeField(required=False, help_text="Before this time.")

    query_serializer_class = AuditFilterSerializer

    def get_queryset(self):
        events = AuditEvent.objects.order_by("-created_at", "-id")
        for name in ("action", "actor", "target_type", "target_id"):
            if self.params.get(name):
                events = events.filter(**{name: self.params[name]})
        if self.params.get("since"):
            events = events.filter(created_at__gte=self.params["since"])
        if self.params.get("until"):
            events = events.filter(created_at__lt=self.params["until"])
        return events

    @extend_schema(tags=["audit"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
