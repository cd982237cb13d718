"""API of the overview beside the report: profit table, strategy summary, account balances,
and the closed trades as CSV. Each view validates its query and calls one read."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import django_filters.rest_framework
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import overview
from analytics.filters import TradeFilter
from analytics.selectors import TradeFilters
from analytics.serializers import PeriodField
from lifecycle.models import Strategy, Trade
from tradingsite.api_input import (
    StrictApi,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictQuerySerializer,
)

# --- input --------------------------------------------------------------------------------


class ProfitQuerySerializer(StrictQuerySerializer):
    unit = StrictChoiceField(choices=list(overview.UNITS), default="day",
                             help_text="day, week (ISO, from Monday) or month, local time.")
    count = StrictIntegerField(default=14, min_value=1, max_value=366,
                               help_text="How many units, the current one included.")
    strategy = StrictCharField(required=False, max_length=64, help_text="Strategy name.")

    def validate_strategy(self, value: str) -> str:
        if not Strategy.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"Unknown strategy {value!r}.")
        return value


class StrategySummaryQuerySerializer(StrictQuerySerializer):
    period = PeriodField(default="ALL")


# --- output -------------------------------------------------------------------------------


class ProfitRowSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(allow_null=True, help_text="null for the current unit.")
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    pnl = serializers.FloatField(help_text="Realised PnL, fees deducted (quote currency).")
    fees = serializers.FloatField()
    pnl_percent = serializers.FloatField(
        allow_null=True, help_text="PnL as % of the equity at the unit's start.")
    start_equity = serializers.FloatField()


class ProfitTableSerializer(serializers.Serializer):
    unit = serializers.CharField()
    time_zone = serializers.CharField()
    currency = serializers.CharField(help_text="Quote currency ('' when accounts differ).")
    starting_capital = serializers.FloatField()
    rows = ProfitRowSerializer(many=True, help_text="The current unit first.")


class StrategyRowSerializer(serializers.Serializer):
    strategy = serializers.CharField()
    account = serializers.CharField()
    currency = serializers.CharField()
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True, help_text="Fraction of trades won.")
    pnl = serializers.FloatField()
    fees = serializers.FloatField()
    average_pnl_percent = serializers.FloatField(allow_null=True)
    return_percent = serializers.FloatField(
        allow_null=True, help_text="PnL as % of the account's starting capital.")
    open_positions = serializers.IntegerField()
    unrealised_pnl = serializers.FloatField(help_text="Gross, at the mark prices.")


class WindowBoundsSerializer(serializers.Serializer):
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)


class StrategySummarySerializer(serializers.Serializer):
    period = serializers.CharField()
    window = WindowBoundsSerializer()
    strategies = StrategyRowSerializer(many=True)


class AccountRowSerializer(serializers.Serializer):
    account = serializers.CharField()
    exchange_id = serializers.CharField()
    paper = serializers.BooleanField()
    currency = serializers.CharField()
    starting_capital = serializers.FloatField()
    realised_pnl = serializers.FloatField()
    balance = serializers.FloatField(help_text="Starting capital + realised PnL (the "
                                               "platform's book).")
    open_positions = serializers.IntegerField()
    unrealised_pnl = serializers.FloatField()
    equity = serializers.FloatField(help_text="Balance + unrealised PnL.")
    long_exposure = serializers.FloatField(help_text="Notional of long positions at the mark.")
    short_exposure = serializers.FloatField()
    net_exposure = serializers.FloatField()
    gross_exposure = serializers.FloatField()
    exposure_percent = serializers.FloatField(allow_null=True,
                                              help_text="Gross exposure as % of equity.")


class AccountBalancesSerializer(serializers.Serializer):
    accounts = AccountRowSerializer(many=True)


# --- views ---------------------------------------------------------------------------------


class ProfitTableView(StrictApi, APIView):
    query_serializer_class = ProfitQuerySerializer

    @extend_schema(responses=ProfitTableSerializer, operation_id="analytics_profit",
                   summary="Realised PnL per day, week or month (the current one first)")
    def get(self, request: Request) -> Response:
        table = overview.profit_table(unit=self.params["unit"], count=self.params["count"],
                                      filters=TradeFilters(strategy=self.params.get("strategy")))
        return Response(ProfitTableSerializer(table).data)


class StrategySummaryView(StrictApi, APIView):
    query_serializer_class = StrategySummaryQuerySerializer

    @extend_schema(responses=StrategySummarySerializer, operation_id="analytics_strategies",
                   summary="Per strategy: closed trades of a period and what it holds now")
    def get(self, request: Request) -> Response:
        summary = overview.strategy_summary(period=self.params["period"])
        return Response(StrategySummarySerializer(summary).data)


class AccountBalancesView(StrictApi, APIView):
    @extend_schema(responses=AccountBalancesSerializer, operation_id="analytics_accounts",
                   summary="Per exchange account: balance, open exposure and equity")
    def get(self, request: Request) -> Response:
        return Response(AccountBalancesSerializer(overview.account_balances()).data)


CSV_COLUMNS = ["id", "strategy", "symbol", "side", "quantity", "entry_price", "exit_price",
               "opened_at", "closed_at", "fees", "pnl", "pnl_percent", "holding_seconds",
               "exit_reason", "external_ref", "position"]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(trades: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in trades.values_list("id", "strategy__name", "symbol", "side", "quantity",
                                  "entry_price", "exit_price", "opened_at", "closed_at", "fees",
                                  "pnl", "pnl_percent", "holding_seconds", "exit_reason",
                                  "external_ref", "position_id").iterator(chunk_size=2000):
        yield writer.writerow([_csv_value(value) for value in row])


def _csv_value(value: Any) -> Any:
    if hasattr(value, "normalize"):  # Decimal: no trailing zeros, never exponent notation
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return "" if value is None else value


class TradeExportView(StrictApi, generics.ListAPIView):
    """Closed trades as CSV (same filters and ordering as the trade list), newest first."""

    filterset_class = TradeFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend]
    pagination_class = None
    queryset = Trade.objects.select_related("strategy").order_by("-closed_at", "-id")

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(
        OpenApiTypes.STR, description=f"Columns: {', '.join(CSV_COLUMNS)}.")},
        operation_id="analytics_trades_export", summary="Closed trades as CSV")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> StreamingHttpResponse:
        trades = self.filter_queryset(self.get_queryset())
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(_csv_lines(trades), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="trades-{stamp}.csv"'
        return response
