"""Lifecycle API: tracked positions, timeouts, hand-over of external positions, close requests,
and a strategy's entry orders (whose fill opens its position).

One class per operation; each validates its input, calls one selector or service
and serialises the result. Reads are open to any authenticated user, writes to staff
(``IsStaffOrReadOnly``); invalid transitions become HTTP 409 in ``api_errors``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.api import OrderSerializer
from execution.models import OrderSide, OrderType
from execution.services import order_request
from lifecycle.models import Position, PositionSide, PositionState, Strategy
from lifecycle.selectors import (
    TIMEOUT_STATES,
    position_state_counts,
    timeout_positions,
    tracked_positions,
    with_timing,
)
from lifecycle.services import position_hand_over, position_request_close
from tradingsite.api_base import ReadModelSerializer
from tradingsite.api_input import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_PARAMETER,
    PastDateTimeField,
    StrictApi,
    StrictCharField,
    StrictChoiceField,
    StrictDecimalField,
    StrictQuerySerializer,
    StrictSerializer,
    StrictSlugRelatedField,
    idempotency_key,
)
from tradingsite.domain import MONEY, QTY, CloseReason

TAG = "lifecycle"


class PositionSerializer(ReadModelSerializer):
    strategy = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Position
        fields = ["id", "strategy", "symbol", "side", "quantity", "initial_quantity",
                  "entry_price", "entry_fee", "opened_at", "state", "state_changed_at",
                  "source", "external_ref", "close_reason", "health_score", "danger_level"]
        read_only_fields = fields


class TrackedPositionSerializer(PositionSerializer):
    warning_due_at = serializers.DateTimeField(read_only=True)
    timeout_due_at = serializers.DateTimeField(read_only=True)
    age_minutes = serializers.FloatField(source="timing.age_minutes", read_only=True)
    minutes_to_warning = serializers.FloatField(source="timing.minutes_to_warning",
                                                read_only=True, allow_null=True)
    minutes_to_timeout = serializers.FloatField(source="timing.minutes_to_timeout",
                                                read_only=True, allow_null=True)
    close_action_id = serializers.IntegerField(read_only=True, allow_null=True)
    close_action_state = serializers.CharField(read_only=True, allow_null=True)

    class Meta(PositionSerializer.Meta):
        fields = [*PositionSerializer.Meta.fields, "warning_due_at", "timeout_due_at",
                  "age_minutes", "minutes_to_warning", "minutes_to_timeout", "close_action_id",
                  "close_action_state"]
        read_only_fields = fields


class TimeoutPositionSerializer(TrackedPositionSerializer):
    """How late a position is: positive minutes past its warning threshold and max holding time."""

    minutes_past_warning = serializers.FloatField(source="timing.minutes_past_warning",
                                                  read_only=True)
    minutes_past_timeout = serializers.FloatField(source="timing.minutes_past_timeout",
                                                  read_only=True)
    warning_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When it became WARNING; null if it never was (a close can come first).")
    critical_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When it became CRITICAL (timed out); null while it has not.")
    closing_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="When its close order went out; null until then.")

    class Meta(TrackedPositionSerializer.Meta):
        fields = [*TrackedPositionSerializer.Meta.fields, "minutes_past_warning",
                  "minutes_past_timeout", "warning_at", "critical_at", "closing_at"]
        read_only_fields = fields


def _page_schema(name: str, item: type[serializers.Serializer]) -> serializers.Serializer:
    return inline_serializer(name, fields={
        "checked_at": serializers.DateTimeField(),
        "counts": serializers.DictField(child=serializers.IntegerField(),
                                        help_text="Positions per state."),
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": item(many=True),
    })


class _PositionPage(StrictApi, GenericAPIView):
    """A page of positions with their timing, plus the count of positions per state."""

    item_serializer: type[serializers.Serializer] = TrackedPositionSerializer
    count_states: list[str] = PositionState.active()
    filter_backends: list = []
    paged = True

    def page_response(self, request: Request, queryset: QuerySet[Position]) -> Response:
        now = timezone.now()
        page = self.paginator.paginate_queryset(queryset, request, view=self)
        return Response({
            "checked_at": now,
            "counts": position_state_counts(self.count_states),
            "count": self.paginator.count,
            "next": self.paginator.get_next_link(),
            "previous": self.paginator.get_previous_link(),
            "results": self.item_serializer(with_timing(page, now), many=True).data,
        })


class TrackedPositionsApi(_PositionPage):
    """Positions under supervision with their age and minutes to warning and timeout."""

    class TrackedFilterSerializer(StrictQuerySerializer):
        state = StrictChoiceField(choices=PositionState.active(), required=False)
        strategy = StrictCharField(required=False)
        symbol = StrictCharField(required=False)

    query_serializer_class = TrackedFilterSerializer

    @extend_schema(tags=[TAG],
                   responses=_page_schema("TrackedPositionPage", TrackedPositionSerializer))
    def get(self, request: Request) -> Response:
        state = self.params.get("state")
        return self.page_response(request, tracked_positions(
            states=[state] if state else None, strategy=self.params.get("strategy"),
            symbol=self.params.get("symbol")))


class TimeoutsApi(_PositionPage):
    """Positions past their warning threshold or being closed, the most overdue first."""

    item_serializer = TimeoutPositionSerializer
    count_states = TIMEOUT_STATES

    @extend_schema(tags=[TAG], responses=_page_schema("TimeoutPositionPage",
                                                      TimeoutPositionSerializer))
    def get(self, request: Request) -> Response:
        return self.page_response(request, timeout_positions())


class HandOverPositionApi(StrictApi, APIView):
    """An external bot hands a filled position to the platform for supervision (staff)."""

    class HandOverSerializer(StrictSerializer):
        strategy = StrictSlugRelatedField(slug_field="name", queryset=Strategy.objects.all())
        symbol = StrictCharField(max_length=64, visible=True)
        side = StrictChoiceField(choices=PositionSide.choices)
        quantity = StrictDecimalField(**QTY, positive=True)
        entry_price = StrictDecimalField(**MONEY, positive=True)
        entry_fee = StrictDecimalField(**MONEY, min_value=0, default=Decimal("0"))
        opened_at = PastDateTimeField(required=False,
                                      help_text="When the entry filled (default: now).")
        external_ref = StrictCharField(
            max_length=128, required=False, allow_blank=True, default="",
            help_text="The bot's reference: a hand-over repeated with it returns the position "
                      "(200) if the rest of the request is the same, else a 409 naming the "
                      "fields that differ.")

        def validate_opened_at(self, value: datetime) -> datetime:
            if value > timezone.now():
                raise serializers.ValidationError("cannot be in the future")
            return value

    @extend_schema(tags=[TAG], request=HandOverSerializer, responses={
        201: PositionSerializer,
        200: OpenApiResponse(PositionSerializer, description="Already handed over (same ref "
                                                             "and request)."),
    })
    def post(self, request: Request) -> Response:
        data = self.HandOverSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        position, created = position_hand_over(**data.validated_data,
                                               actor=request.user.get_username())
        return Response(PositionSerializer(position).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ClosePositionApi(StrictApi, APIView):
    """Queue the emergency close of a position (staff); 409 when it is already closed."""

    class CloseRequestSerializer(StrictSerializer):
        note = StrictCharField(max_length=200, required=False, allow_blank=True, default="",
                               help_text="Why, kept on the position's history.")

    class CloseResultSerializer(serializers.Serializer):
        position = serializers.IntegerField()
        action_id = serializers.IntegerField()
        action_state = serializers.CharField()
        created = serializers.BooleanField(help_text="False: a close was already queued.")

    @extend_schema(tags=[TAG], request=CloseRequestSerializer, responses={
        202: CloseResultSerializer,
        200: OpenApiResponse(CloseResultSerializer, description="A close was already queued."),
        409: OpenApiResponse(description="The position is already closed."),
    })
    def post(self, request: Request, position_id: int) -> Response:
        data = self.CloseRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        position = get_object_or_404(Position, pk=position_id)
        action, created = position_request_close(
            position=position, reason=CloseReason.MANUAL, actor=request.user.get_username(),
            note=data.validated_data["note"])
        body = self.CloseResultSerializer({"position": position.pk, "action_id": action.pk,
                                      "action_state": action.state, "created": created}).data
        return Response(body, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


# --- entry orders of a strategy (served under /api/execution/orders/place) -------------

EXECUTION_TAG = "execution"


class PlaceOrderApi(StrictApi, APIView):
    """Send an entry order through the pipeline (staff); its fill opens the position.

    Answers 202 at once: placement, retries and polling run on the workers; 409 while
    trading is halted (``halt_trading``, or a shutdown in progress). With an
    idempotency key, a retry after a lost 202 gets the same order (200).
    """

    class PlaceOrderSerializer(StrictSerializer):
        strategy = StrictSlugRelatedField(slug_field="name",
                                          queryset=Strategy.objects.select_related("account"))
        symbol = StrictCharField(max_length=64, visible=True)
        side = StrictChoiceField(choices=OrderSide.choices)
        quantity = StrictDecimalField(**QTY, positive=True)
        order_type = StrictChoiceField(choices=OrderType.choices, default=OrderType.MARKET)
        price = StrictDecimalField(**MONEY, positive=True, required=False, allow_null=True,
                                   default=None, help_text="Limit price (limit orders only).")
        expected_price = StrictDecimalField(
            **MONEY, positive=True, required=False, allow_null=True, default=None,
            help_text="The price the decision was based on: slippage is measured against it.")
        idempotency_key = StrictCharField(
            max_length=128, required=False, visible=True,
            help_text="Your key for this order: repeated with the same order it returns the "
                      "order the first request recorded (200) and places nothing; with other "
                      "order fields it is a 409 naming them. May also be sent as the "
                      f"{IDEMPOTENCY_HEADER} header.")

        def validate(self, data):
            if data["order_type"] == OrderType.LIMIT and data.get("price") is None:
                raise serializers.ValidationError({"price": "a limit order needs a price"})
            if data["order_type"] == OrderType.MARKET and data.get("price") is not None:
                raise serializers.ValidationError({"price": "a market order takes no price"})
            return data

    @extend_schema(tags=[EXECUTION_TAG], request=PlaceOrderSerializer,
                   parameters=[IDEMPOTENCY_PARAMETER],
                   responses={
        202: OrderSerializer,
        200: OpenApiResponse(OrderSerializer, description="Already placed with this key."),
        409: OpenApiResponse(description="Trading is halted (new entries are refused), or the "
                                         "key was used for a different order.")})
    def post(self, request: Request) -> Response:
        data = self.PlaceOrderSerializer(data=idempotency_key(request, request.data))
        data.is_valid(raise_exception=True)
        order, created = order_request(caller=request.user, **data.validated_data)
        return Response(OrderSerializer(order).data,
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)
