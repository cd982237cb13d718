"""Analytics API: performance report, equity curve, trade list, execution metrics.

Each view validates its query, calls one service and serialises the result.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import services
from analytics.execution_metrics import execution_metrics
from analytics.filters import TradeFilter
from analytics.serializers import (
    EquityCurveSerializer,
    EquityQuerySerializer,
    ExecutionQuerySerializer,
    ExecutionReportSerializer,
    PerformanceQuerySerializer,
    PerformanceReportSerializer,
    TradeSerializer,
)
from lifecycle.models import Trade


class PerformanceView(APIView):
    @extend_schema(parameters=[PerformanceQuerySerializer],
                   responses=PerformanceReportSerializer, operation_id="analytics_performance",
                   summary="Performance metrics of the closed trades of a period")
    def get(self, request: Request) -> Response:
        query = PerformanceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report_request = query.report_request(top_n=query.validated_data["top"])
        if query.validated_data["fresh"]:
            report = services.performance_report(report_request)
        else:
            report = services.cached_performance_report(report_request)
        return Response(PerformanceReportSerializer(report).data)


class EquityView(APIView):
    @extend_schema(parameters=[EquityQuerySerializer], responses=EquityCurveSerializer,
                   operation_id="analytics_equity",
                   summary="Realised equity curve of a period, downsampled")
    def get(self, request: Request) -> Response:
        query = EquityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        curve = services.equity_curve(query.report_request(),
                                      resolution=query.validated_data["resolution"],
                                      max_points=query.validated_data["points"])
        return Response(EquityCurveSerializer(curve).data)


class TradeListView(generics.ListAPIView):
    """Closed trades, newest first; filter by strategy, symbol, side, exit reason, period."""

    serializer_class = TradeSerializer
    filterset_class = TradeFilter
    ordering_fields = ["closed_at", "opened_at", "pnl", "pnl_percent", "holding_seconds", "fees"]
    ordering = ["-closed_at", "-id"]
    queryset = Trade.objects.select_related("strategy")


class ExecutionView(APIView):
    @extend_schema(parameters=[ExecutionQuerySerializer], responses=ExecutionReportSerializer,
                   operation_id="analytics_execution",
                   summary="Execution metrics of orders, overall and per exchange account")
    def get(self, request: Request) -> Response:
        query = ExecutionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        report = execution_metrics(period=data["period"], start=data.get("start"),
                                   end=data.get("end"), account=data.get("account"))
        return Response(ExecutionReportSerializer(report).data)
