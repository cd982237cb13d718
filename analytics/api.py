"""Analytics API: performance report, equity curve, trade list, execution metrics, exposure.

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
from analytics.exposure import account_exposures
from analytics.filters import TradeFilter
from analytics.serializers import (
    AccountExposureSerializer,
    EquityCurveSerializer,
    EquityQuerySerializer,
    ExecutionQuerySerializer,
    ExecutionReportSerializer,
    PerformanceQuerySerializer,
    PerformanceReportSerializer,
    TradeSerializer,
)
from lifecycle.models import Trade
from tradingsite.api_input import StrictApi


class PerformanceView(StrictApi, APIView):
    query_serializer_class = PerformanceQuerySerializer

    @extend_schema(responses=PerformanceReportSerializer, operation_id="analytics_performance",
                   summary="Performance metrics of the closed trades of a period")
    def get(self, request: Request) -> Response:
        report_request = PerformanceQuerySerializer.report_request(self.params,
                                                                   top_n=self.params["top"])
        if self.params["fresh"]:
            report = services.performance_report(report_request)
        else:
            report = services.cached_performance_report(report_request)
        return Response(PerformanceReportSerializer(report).data)


class EquityView(StrictApi, APIView):
    query_serializer_class = EquityQuerySerializer

    @extend_schema(responses=EquityCurveSerializer,
                   operation_id="analytics_equity",
                   summary="Realised equity curve of a period, downsampled")
    def get(self, request: Request) -> Response:
        curve = services.equity_curve(EquityQuerySerializer.report_request(self.params),
                                      resolution=self.params["resolution"],
                                      max_points=self.params["points"])
        return Response(EquityCurveSerializer(curve).data)


class TradeListView(StrictApi, generics.ListAPIView):
    """Closed trades, newest first; filter by strategy, symbol, side, exit reason, period."""

    serializer_class = TradeSerializer
    filterset_class = TradeFilter
    ordering_fields = ["closed_at", "opened_at", "pnl", "pnl_percent", "holding_seconds", "fees"]
    ordering = ["-closed_at", "-id"]
    queryset = Trade.objects.select_related("strategy")


class ExecutionView(StrictApi, APIView):
    query_serializer_class = ExecutionQuerySerializer

    @extend_schema(responses=ExecutionReportSerializer,
                   operation_id="analytics_execution",
                   summary="Execution metrics of orders, overall and per exchange account")
    def get(self, request: Request) -> Response:
        data = self.params
        report = execution_metrics(period=data["period"], start=data.get("start"),
                                   end=data.get("end"), account=data.get("account"))
        return Response(ExecutionReportSerializer(report).data)


class ExposureView(StrictApi, APIView):
    @extend_schema(responses=AccountExposureSerializer(many=True),
                   operation_id="analytics_exposure",
                   summary="Balance, equity and exposure per symbol of every account, at the "
                           "latest marks")
    def get(self, request: Request) -> Response:
        return Response(AccountExposureSerializer(account_exposures(), many=True).data)
