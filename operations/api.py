"""The platform's generic read API and its operator actions (mounted under /api/).

Resources an app already exposes in its own ``api_urls`` are not repeated here
(alerts: ``/api/health/alerts``; orders and the action queue: ``/api/execution/…``);
this module covers strategies, positions with their health and events, operator
close requests and the trading halt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.api import ActionSerializer
from execution.models import ActionKind
from lifecycle.api import TrackedPositionSerializer
from lifecycle.danger import danger_level_expression
from lifecycle.models import (
    DangerLevel,
    Position,
    PositionEvent,
    PositionState,
    Strategy,
    Trade,
)
from lifecycle.selectors import limits_of, position_timing
from operations import selectors
from operations.services import operator_action_request
from risk.models import HealthSnapshot
from tradingsite.api_base import ReadModelSerializer
from tradingsite.api_input import (
    IDEMPOTENCY_PARAMETER,
    BooleanFilter,
    ChoiceFilter,
    EmptyBody,
    IdField,
    StrictApi,
    StrictCharField,
    StrictChoiceField,
    StrictFilterSet,
    StrictSerializer,
    TimeFilter,
    idempotency_key,
)
from tradingsite.domain import CloseReason
from tradingsite.services import halt_payload, platform_state, trading_halt, trading_resume

MONEY = {"max_digits": 28, "decimal_places": 10}


# --- serializers ---------------------------------------------------------------

class HealthComponentsSerializer(serializers.Serializer):
    """The five component scores (0–100) that the health score weighs."""

    time_at_risk = serializers.DecimalField(source="time_score", max_digits=6, decimal_places=2)
    drawdown = serializers.DecimalField(source="drawdown_score", max_digits=6, decimal_places=2)
    volume = serializers.DecimalField(source="volume_score", max_digits=6, decimal_places=2)
    volatility = serializers.DecimalField(source="volatility_score", max_digits=6,
                                          decimal_places=2)
    profitability = serializers.DecimalField(source="profitability_score", max_digits=6,
                                             decimal_places=2)


class HealthSnapshotSerializer(ReadModelSerializer):
    components = HealthComponentsSerializer(source="*", read_only=True)

    class Meta:
        model = HealthSnapshot
        fields = ["id", "taken_at", "score", "components", "danger_level", "price",
                  "data_complete", "missing"]
        read_only_fields = fields


class PositionEventSerializer(ReadModelSerializer):
    class Meta:
        model = PositionEvent
        fields = ["id", "created_at", "kind", "from_state", "to_state", "reason", "actor",
                  "details"]
        read_only_fields = fields


class StrategySerializer(ReadModelSerializer):
    account = serializers.SlugRelatedField(slug_field="name", read_only=True)
    max_holding_time_minutes = serializers.SerializerMethodField()
    warning_threshold_minutes = serializers.SerializerMethodField()

    class Meta:
        model = Strategy
        fields = ["id", "name", "account", "timeframe", "enabled", "description",
                  "max_holding_time_minutes", "warning_threshold_minutes", "live_trading",
                  "created_at"]
        read_only_fields = fields

    def get_max_holding_time_minutes(self, strategy: Strategy) -> int:
        return limits_of(strategy).max_minutes

    def get_warning_threshold_minutes(self, strategy: Strategy) -> int:
        return limits_of(strategy).warning_minutes


class PositionOverviewSerializer(TrackedPositionSerializer):
    """A position as an operator reads it.

    Lifecycle's tracked-position fields (deadlines, countdowns, close action) plus the
    account, the mark price, the gross unrealised PnL and the newest health check.
    """

    account = serializers.CharField(source="strategy.account.name", read_only=True)
    mark_price = serializers.DecimalField(source="last_price", read_only=True, allow_null=True,
                                          **MONEY)
    mark_price_at = serializers.DateTimeField(source="last_price_at", read_only=True,
                                              allow_null=True)
    quote_currency = serializers.CharField(source="strategy.account.quote_currency",
                                           read_only=True,
                                           help_text="The account's currency of every amount.")
    unrealised_pnl = serializers.SerializerMethodField(
        help_text="Gross at the mark price, before fees; null once closed (see trade).")
    unrealised_pnl_percent = serializers.SerializerMethodField(
        help_text="Unrealised PnL as % of the entry notional of the quantity held.")
    mark_age_seconds = serializers.SerializerMethodField(
        help_text="Seconds since the mark was read (null: no mark yet).")
    mark_stale = serializers.SerializerMethodField(
        help_text="The mark is older than three markRefreshSeconds of the account (or "
                  "missing) while the position is held.")
    age_seconds = serializers.SerializerMethodField()
    health = serializers.SerializerMethodField()

    class Meta(TrackedPositionSerializer.Meta):
        fields = [*TrackedPositionSerializer.Meta.fields, "account", "quote_currency",
                  "mark_price", "mark_price_at", "mark_age_seconds", "mark_stale",
                  "unrealised_pnl", "unrealised_pnl_percent",
                  "age_seconds", "health_checked_at", "health", "close_requested_by",
                  "closed_at"]
        read_only_fields = fields

    def to_representation(self, instance: Position) -> dict[str, Any]:
        instance.timing = position_timing(instance, self._now())
        return super().to_representation(instance)

    def _now(self) -> datetime:
        return self.context.setdefault("now", timezone.now())

    def get_age_seconds(self, position: Position) -> int:
        return int(position.holding_seconds(self._now()))

    @extend_schema_field(serializers.DecimalField(allow_null=True, **MONEY))
    def get_unrealised_pnl(self, position: Position) -> str | None:
        pnl = position.unrealised_pnl() if position.is_active else None
        return None if pnl is None else serializers.DecimalField(**MONEY).to_representation(pnl)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_unrealised_pnl_percent(self, position: Position) -> float | None:
        pnl = position.unrealised_pnl() if position.is_active else None
        notional = position.entry_price * position.quantity
        return None if pnl is None or not notional else round(float(pnl / notional * 100), 4)

    def get_mark_age_seconds(self, position: Position) -> float | None:
        if position.last_price_at is None:
            return None
        return round(max((self._now() - position.last_price_at).total_seconds(), 0.0), 1)

    def get_mark_stale(self, position: Position) -> bool:
        if position.state == PositionState.CLOSED:
            return False
        age = self.get_mark_age_seconds(position)
        refresh = self.context.setdefault("mark_refresh", {})
        account = position.strategy.account
        if account.pk not in refresh:
            refresh[account.pk] = account.sync_settings().mark_refresh_seconds
        return age is None or age > 3 * refresh[account.pk]

    @extend_schema_field(HealthSnapshotSerializer(allow_null=True))
    def get_health(self, position: Position) -> dict[str, Any] | None:
        snapshot = selectors.latest_health(position)
        return HealthSnapshotSerializer(snapshot).data if snapshot else None


class PositionTradeSerializer(ReadModelSerializer):
    """The closed result of a position: what it realised, at which price, why, how long."""

    class Meta:
        model = Trade
        fields = ["id", "quantity", "entry_price", "exit_price", "opened_at", "closed_at",
                  "fees", "pnl", "pnl_percent", "holding_seconds", "exit_reason"]
        read_only_fields = fields


class PositionDetailSerializer(PositionOverviewSerializer):
    events = PositionEventSerializer(many=True, read_only=True)
    trade = serializers.SerializerMethodField()

    class Meta(PositionOverviewSerializer.Meta):
        fields = [*PositionOverviewSerializer.Meta.fields, "events", "trade"]
        read_only_fields = fields

    @extend_schema_field(PositionTradeSerializer(allow_null=True))
    def get_trade(self, position: Position) -> dict[str, Any] | None:
        trade = getattr(position, "trade", None) if position.state == PositionState.CLOSED \
            else None
        return PositionTradeSerializer(trade).data if trade is not None else None


class CandleSerializer(serializers.Serializer):
    time = serializers.DateTimeField(source="open_time", help_text="The candle's open time.")
    open = serializers.DecimalField(**MONEY)
    high = serializers.DecimalField(**MONEY)
    low = serializers.DecimalField(**MONEY)
    close = serializers.DecimalField(**MONEY)
    volume = serializers.DecimalField(max_digits=32, decimal_places=10)


class PositionCandlesSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    timeframe = serializers.CharField()
    exchange_id = serializers.CharField()
    candles = CandleSerializer(many=True, help_text="Oldest first: from shortly before the "
                                                    "entry to the close (or now).")


class ActionRequestSerializer(StrictSerializer):
    """An operator's request: close a position now (the close goes through the action queue)."""

    kind = StrictChoiceField(
        choices=[(k, ActionKind(k).label) for k in ActionKind.closing()],
        default=ActionKind.EMERGENCY_CLOSE)
    position = IdField(queryset=Position.objects.all())
    reason = StrictChoiceField(choices=CloseReason.choices, default=CloseReason.MANUAL)
    idempotency_key = StrictCharField(
        max_length=128, required=False, visible=True,
        help_text="Your key for this request (yours alone: it never meets other callers' "
                  "or the platform's keys). Repeated with the same request it returns the "
                  "action the first one got (200); with a different request it is a 409 "
                  "naming the fields that differ. May also be sent as the Idempotency-Key "
                  "header.")
    note = StrictCharField(max_length=200, required=False, allow_blank=True, default="",
                           help_text="Why, kept on the position's history.")


class TradingHaltSerializer(serializers.Serializer):
    trading_halted = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    halted_at = serializers.DateTimeField(allow_null=True)
    halted_by = serializers.CharField(allow_blank=True)


class TradingHaltRequestSerializer(StrictSerializer):
    reason = StrictCharField(max_length=255, visible=True,
                             help_text="Why new entries are stopped.")


def position_candles_payload(position: Position) -> dict[str, Any]:
    strategy = position.strategy
    return {"symbol": position.symbol, "timeframe": strategy.timeframe,
            "exchange_id": strategy.account.exchange_id,
            "candles": selectors.position_candles(position)}


# --- filters -------------------------------------------------------------------

class PositionFilter(StrictFilterSet):
    strategy = django_filters.CharFilter(field_name="strategy__name")
    danger_level = ChoiceFilter(choices=DangerLevel.choices, method="filter_danger_level",
                                help_text="The one danger level (health and state together).")
    state = django_filters.MultipleChoiceFilter(choices=PositionState.choices)
    active = BooleanFilter(method="filter_active", label="Only positions still held (not CLOSED)")
    opened_after = TimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_before = TimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Position
        fields = ["strategy", "symbol", "side", "state", "danger_level", "active"]

    def filter_danger_level(self, queryset: QuerySet[Position], name: str, value: str
                            ) -> QuerySet[Position]:
        return queryset.alias(level=danger_level_expression()).filter(level=value)

    def filter_active(self, queryset: QuerySet[Position], name: str, value: bool
                      ) -> QuerySet[Position]:
        if value is None:
            return queryset
        active = queryset.filter(state__in=PositionState.active())
        return active if value else queryset.exclude(pk__in=active.values("pk"))


class StrategyFilter(StrictFilterSet):
    account = django_filters.CharFilter(field_name="account__name")

    class Meta:
        model = Strategy
        fields = ["account", "enabled", "timeframe"]


# --- views -----------------------------------------------------------------------

class StrategyViewSet(StrictApi, viewsets.ReadOnlyModelViewSet):
    """Strategies with their effective holding-time limits."""

    lookup_value_converter = "id"
    serializer_class = StrategySerializer
    filterset_class = StrategyFilter
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> QuerySet[Strategy]:
        return selectors.strategies()


class PositionViewSet(StrictApi, viewsets.ReadOnlyModelViewSet):
    """Supervised positions with their timings and newest health check (detail: events too)."""

    lookup_value_converter = "id"
    filterset_class = PositionFilter
    ordering_fields = ["opened_at", "health_score", "symbol", "state_changed_at"]

    def get_queryset(self) -> QuerySet[Position]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no database reads
            return Position.objects.none()
        if self.action == "retrieve":
            return selectors.positions_with_health().prefetch_related("events")
        return selectors.positions_with_health()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return PositionDetailSerializer if self.action == "retrieve" else PositionOverviewSerializer

    @extend_schema(responses=PositionCandlesSerializer,
                   summary="Candles of a position's market around its holding time")
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def candles(self, request: Request, pk: str | None = None) -> Response:
        position = self.get_object()
        return Response(PositionCandlesSerializer(position_candles_payload(position)).data)

    @extend_schema(responses=HealthSnapshotSerializer(many=True),
                   summary="Health history of a position (oldest first, newest 500 checks)")
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def health(self, request: Request, pk: str | None = None) -> Response:
        position = self.get_object()
        history = selectors.position_health_history(position)
        return Response(HealthSnapshotSerializer(history, many=True).data)


class ActionRequestView(StrictApi, APIView):
    """Staff request an emergency close through the action queue (idempotent by key).

    The queue itself is listed by ``/api/execution/actions``.
    """

    @extend_schema(
        request=ActionRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: ActionSerializer, 200: ActionSerializer},
        summary="Request an emergency close (201 queued, 200 already requested)")
    def post(self, request: Request) -> Response:
        given = ActionRequestSerializer(data=idempotency_key(request, request.data))
        given.is_valid(raise_exception=True)
        action_obj, created = operator_action_request(caller=request.user,
                                                      **given.validated_data)
        return Response(ActionSerializer(action_obj).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TradingHaltView(StrictApi, APIView):
    """Whether new entries are halted; staff may halt them (closing goes on)."""

    @extend_schema(responses=TradingHaltSerializer, summary="Trading-halt state")
    def get(self, request: Request) -> Response:
        return Response(TradingHaltSerializer(halt_payload(platform_state())).data)

    @extend_schema(request=TradingHaltRequestSerializer, responses=TradingHaltSerializer,
                   summary="Halt new entries")
    def post(self, request: Request) -> Response:
        given = TradingHaltRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        state = trading_halt(reason=given.validated_data["reason"],
                             actor=request.user.get_username())
        return Response(TradingHaltSerializer(halt_payload(state)).data)


class TradingResumeView(StrictApi, APIView):
    """Staff resume new entries after a halt."""

    @extend_schema(request=None, responses=TradingHaltSerializer, summary="Resume new entries")
    def post(self, request: Request) -> Response:
        EmptyBody(data=request.data).is_valid(raise_exception=True)
        state = trading_resume(actor=request.user.get_username())
        return Response(TradingHaltSerializer(halt_payload(state)).data)
