"""Risk API: position health, the health report, alerts and their acknowledgement."""

from __future__ import annotations

import django_filters
import django_filters.rest_framework
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lifecycle.models import DangerLevel, Position, PositionState
from risk import selectors
from risk.models import AlertSeverity, RiskAlert
from risk.serializers import HealthReportSerializer, PositionHealthSerializer, RiskAlertSerializer
from risk.services import alert_acknowledge
from tradingsite.api_input import (
    BooleanFilter,
    ChoiceFilter,
    EmptyBody,
    IdFilter,
    StrictApi,
    StrictFilterSet,
    StrictIntegerField,
    StrictQuerySerializer,
    TimeFilter,
)

TAGS = ["risk"]


class PositionHealthFilter(StrictFilterSet):
    strategy = django_filters.CharFilter(field_name="strategy__name")
    symbol = django_filters.CharFilter()
    danger_level = ChoiceFilter(choices=DangerLevel.choices)
    state = ChoiceFilter(choices=[(s, s) for s in PositionState.active()])

    class Meta:
        model = Position
        fields = ["strategy", "symbol", "danger_level", "state"]


@extend_schema(tags=TAGS, summary="Current health of every held position, worst first")
class PositionHealthView(StrictApi, generics.ListAPIView):
    serializer_class = PositionHealthSerializer
    filterset_class = PositionHealthFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend]  # worst first, always

    def get_queryset(self):
        return selectors.position_health_queryset()

    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        items = selectors.position_health_items(list(page))
        return self.get_paginated_response(self.get_serializer(items, many=True).data)


class HealthReportQuery(StrictQuerySerializer):
    worst = StrictIntegerField(min_value=1, max_value=100, default=10,
                               help_text="How many worst positions to list.")


@extend_schema(tags=TAGS, summary="Counts per danger level, worst positions, open alerts",
               responses=HealthReportSerializer)
class HealthReportView(StrictApi, APIView):
    query_serializer_class = HealthReportQuery

    def get(self, request: Request) -> Response:
        report = selectors.health_report(worst=self.params["worst"])
        return Response(HealthReportSerializer(report).data)


class RiskAlertFilter(StrictFilterSet):
    severity = ChoiceFilter(choices=AlertSeverity.choices)
    kind = django_filters.CharFilter()
    position = IdFilter(field_name="position_id")
    strategy = django_filters.CharFilter(field_name="position__strategy__name")
    symbol = django_filters.CharFilter(field_name="position__symbol")
    open = BooleanFilter(field_name="resolved_at", lookup_expr="isnull",
                         label="Open (not resolved)")
    acknowledged = BooleanFilter()
    since = TimeFilter(field_name="last_seen", lookup_expr="gte")

    class Meta:
        model = RiskAlert
        fields = ["severity", "kind", "position", "strategy", "symbol", "open", "acknowledged",
                  "since"]


@extend_schema(tags=TAGS, summary="Risk alerts, newest first (filter open=true for open ones)")
class RiskAlertListView(StrictApi, generics.ListAPIView):
    serializer_class = RiskAlertSerializer
    filterset_class = RiskAlertFilter
    ordering_fields = ["last_seen", "first_seen", "severity", "occurrences"]

    def get_queryset(self):
        return selectors.alerts_with_symbol().order_by("-last_seen", "-id")


@extend_schema(tags=TAGS, summary="One risk alert")
class RiskAlertDetailView(StrictApi, generics.RetrieveAPIView):
    serializer_class = RiskAlertSerializer

    def get_queryset(self):
        return selectors.alerts_with_symbol()


@extend_schema(tags=TAGS, summary="Acknowledge an alert (staff)", request=None,
               responses=RiskAlertSerializer)
class AcknowledgeAlertView(StrictApi, APIView):
    def post(self, request: Request, pk: int) -> Response:
        EmptyBody(data=request.data).is_valid(raise_exception=True)
        get_object_or_404(RiskAlert, pk=pk)
        alert = alert_acknowledge(alert_id=pk, by=request.user.get_username())
        return Response(RiskAlertSerializer(alert).data)
