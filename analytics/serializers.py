"""API input and output shapes; the output fields carry the metric definitions."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from analytics.execution_metrics import EXECUTION_DEFINITIONS
from analytics.metrics import METRIC_DEFINITIONS
from analytics.periods import Period
from analytics.selectors import TradeFilters
from analytics.services import DEFAULT_TOP_N, MAX_EQUITY_POINTS, ReportRequest
from lifecycle.models import Strategy, Trade
from tradingsite.api_input import (
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictDateTimeField,
    StrictIntegerField,
    StrictQuerySerializer,
)
from tradingsite.domain import CloseReason

# --- input ---------------------------------------------------------------------------------


class PeriodField(StrictChoiceField):
    """ALL, TODAY, WEEK or MONTH: calendar periods in the configured time zone."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("help_text", "Calendar period in the configured time zone: ALL, TODAY, "
                                       "WEEK (from Monday 00:00) or MONTH (from the 1st).")
        super().__init__(choices=[p.value for p in Period], **kwargs)

    def to_internal_value(self, data: Any) -> Period:
        return Period(super().to_internal_value(data))


class WindowQuerySerializer(StrictQuerySerializer):
    period = PeriodField(default=Period.ALL)
    start = StrictDateTimeField(
        required=False, help_text="Narrows the window: closed at or after (ISO 8601; without "
                                  "offset: the configured time zone).")
    end = StrictDateTimeField(required=False,
                              help_text="Narrows the window: closed before (ISO 8601).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("start") and attrs.get("end") and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["Must be after start."]})
        return attrs


class ReportQuerySerializer(WindowQuerySerializer):
    strategy = StrictCharField(required=False, max_length=64, help_text="Strategy name.")
    symbol = StrictCharField(required=False, max_length=64,
                             help_text="Symbol, e.g. BTC/USDT:USDT.")
    exit_reason = StrictChoiceField(choices=CloseReason.choices, required=False)

    def validate_strategy(self, value: str) -> str:
        if not Strategy.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"Unknown strategy {value!r}.")
        return value

    @staticmethod
    def report_request(data: dict[str, Any], top_n: int = DEFAULT_TOP_N) -> ReportRequest:
        """The report a validated query asks for."""
        return ReportRequest(
            period=data["period"],
            filters=TradeFilters(strategy=data.get("strategy"), symbol=data.get("symbol"),
                                 exit_reason=data.get("exit_reason")),
            start=data.get("start"), end=data.get("end"), top_n=top_n)


class PerformanceQuerySerializer(ReportQuerySerializer):
    top = StrictIntegerField(default=DEFAULT_TOP_N, min_value=0, max_value=100,
                             help_text="How many top and worst trades to list.")
    fresh = StrictBooleanField(
        default=False, help_text="Compute now instead of reading the cached snapshot.")


class EquityQuerySerializer(ReportQuerySerializer):
    resolution = StrictChoiceField(
        choices=["trade", "day"], default="trade",
        help_text="'trade': equity after every trade (downsampled); 'day': end-of-day equity.")
    points = StrictIntegerField(
        default=MAX_EQUITY_POINTS, min_value=10, max_value=5000,
        help_text="Most points returned; above it each bucket of trades keeps its low and high.")


class ExecutionQuerySerializer(WindowQuerySerializer):
    account = StrictCharField(required=False, max_length=64, help_text="Exchange account name.")


# --- output --------------------------------------------------------------------------------


class NumberField(serializers.FloatField):
    """A float, or an int for counts (kept as an int in JSON)."""

    def to_representation(self, value: Any) -> float | int:
        return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


class MetricSerializer(serializers.Serializer):
    value = NumberField(allow_null=True, help_text="null when undefined on this sample.")
    sample_size = serializers.IntegerField(help_text="Observations the value rests on.")
    undefined_reason = serializers.CharField(
        required=False, help_text="Why the value is null, e.g. no_losses, zero_variance.")


class DrawdownSerializer(MetricSerializer):
    peak_at = serializers.DateTimeField(allow_null=True)
    trough_at = serializers.DateTimeField(allow_null=True)
    peak_equity = serializers.FloatField(allow_null=True)
    trough_equity = serializers.FloatField(allow_null=True)


_DRAWDOWNS = {"max_drawdown", "max_drawdown_amount", "max_daily_drawdown"}


def _metric_fields(definitions: dict[str, str], drawdowns: set[str] = frozenset()) -> dict:
    return {name: (DrawdownSerializer if name in drawdowns else MetricSerializer)(
        help_text=definition) for name, definition in definitions.items()}


PerformanceMetricsSerializer = type(
    "PerformanceMetricsSerializer", (serializers.Serializer,),
    _metric_fields(METRIC_DEFINITIONS, _DRAWDOWNS))
ExecutionSummarySerializer = type(
    "ExecutionSummarySerializer", (serializers.Serializer,),
    _metric_fields(EXECUTION_DEFINITIONS))


class FiltersSerializer(serializers.Serializer):
    strategy = serializers.CharField(allow_null=True)
    symbol = serializers.CharField(allow_null=True)
    exit_reason = serializers.CharField(allow_null=True)


class WindowSerializer(serializers.Serializer):
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)
    days = serializers.IntegerField(required=False,
                                    help_text="Local calendar days the daily returns cover.")


class ReportTradeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    strategy = serializers.CharField()
    symbol = serializers.CharField()
    side = serializers.CharField()
    quantity = serializers.FloatField()
    entry_price = serializers.FloatField()
    exit_price = serializers.FloatField()
    opened_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField()
    fees = serializers.FloatField()
    pnl = serializers.FloatField()
    pnl_percent = serializers.FloatField()
    holding_seconds = serializers.IntegerField()
    exit_reason = serializers.CharField()


class PerformanceReportSerializer(serializers.Serializer):
    period = serializers.CharField()
    filters = FiltersSerializer()
    window = WindowSerializer()
    time_zone = serializers.CharField(help_text="Time zone of the calendar periods and days.")
    starting_capital = serializers.FloatField(
        help_text="Σ starting capital of the exchange accounts of the strategies in scope.")
    realised_before_window = serializers.FloatField(
        help_text="PnL realised in scope before the window's start.")
    start_equity = serializers.FloatField(
        help_text="Equity at the window's start = starting capital + realised before.")
    end_equity = serializers.FloatField()
    trade_count = serializers.IntegerField()
    day_count = serializers.IntegerField()
    metrics = PerformanceMetricsSerializer()
    flags = serializers.ListField(child=serializers.CharField(),
                                  help_text="Every reason a metric is null in this report.")
    top_trades = ReportTradeSerializer(many=True)
    worst_trades = ReportTradeSerializer(many=True)
    computed_at = serializers.DateTimeField()
    cached = serializers.BooleanField(
        help_text="True when read from a snapshot (only while no trade closed in scope since).")
    trades_since = serializers.IntegerField(
        required=False, help_text="Cached only: trades closed in scope since the snapshot "
                                  "(always 0: a stale snapshot is recomputed).")


class EquityPointSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    equity = serializers.FloatField()


class EquityCurveSerializer(serializers.Serializer):
    period = serializers.CharField()
    filters = FiltersSerializer()
    window = WindowSerializer()
    resolution = serializers.CharField()
    start_equity = serializers.FloatField()
    total_points = serializers.IntegerField(help_text="Points before downsampling.")
    downsampled = serializers.BooleanField()
    points = EquityPointSerializer(many=True)


class AccountExecutionSerializer(ExecutionSummarySerializer):
    account = serializers.CharField()
    exchange_id = serializers.CharField()
    testnet = serializers.BooleanField()


class ExecutionReportSerializer(serializers.Serializer):
    period = serializers.CharField(help_text="ALL, TODAY, WEEK or MONTH; CUSTOM when start or "
                                             "end narrowed the window.")
    window = WindowSerializer()
    overall = ExecutionSummarySerializer()
    accounts = AccountExecutionSerializer(many=True)


class TradeSerializer(serializers.ModelSerializer):
    strategy = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Trade
        fields = ["id", "strategy", "symbol", "side", "quantity", "entry_price", "exit_price",
                  "opened_at", "closed_at", "fees", "pnl", "pnl_percent", "holding_seconds",
                  "exit_reason", "external_ref", "position"]
        read_only_fields = fields


class SymbolExposureSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    positions = serializers.IntegerField()
    net_quantity = serializers.DecimalField(max_digits=28, decimal_places=12)
    mark_price = serializers.DecimalField(max_digits=28, decimal_places=10, allow_null=True)
    mark_age_seconds = serializers.FloatField(allow_null=True, help_text="Age of the oldest "
                                              "mark behind this symbol's positions.")
    mark_stale = serializers.BooleanField(help_text="A mark older than three "
                                          "markRefreshSeconds, or a position without one.")
    gross_notional = serializers.DecimalField(max_digits=28, decimal_places=8)
    percent_of_equity = serializers.DecimalField(max_digits=14, decimal_places=2,
                                                 allow_null=True)
    unrealised_pnl = serializers.DecimalField(max_digits=28, decimal_places=8)


class AccountExposureSerializer(serializers.Serializer):
    account = serializers.CharField()
    exchange = serializers.CharField()
    currency = serializers.CharField()
    balance = serializers.DecimalField(max_digits=28, decimal_places=8)
    balance_source = serializers.CharField()
    balance_at = serializers.DateTimeField(allow_null=True)
    unrealised_pnl = serializers.DecimalField(max_digits=28, decimal_places=8)
    equity = serializers.DecimalField(max_digits=28, decimal_places=8,
                                      help_text="Balance + unrealised PnL at the marks.")
    gross_notional = serializers.DecimalField(max_digits=28, decimal_places=8)
    percent_of_equity = serializers.DecimalField(max_digits=14, decimal_places=2,
                                                 allow_null=True)
    exposure = SymbolExposureSerializer(many=True)
