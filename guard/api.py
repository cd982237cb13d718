"""Guard API: every scope's state and limits, the trip history, refused orders, and the
state change an operator makes (staff, with a reason).

One class per operation; each validates its input, calls one selector or service and
serialises the result.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from guard import selectors
from guard.models import OrderRefusal, ReasonCode, ScopeKind, TradingState, TripCode
from guard.services import scope_get, scope_state_set
from tradingsite.api_input import (
    StrictApi,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictQuerySerializer,
    StrictSerializer,
)
from tradingsite.domain import MONEY, QTY

TAG = "guard"
SCOPE_PATTERN = r"^(global|(account|strategy):[-a-zA-Z0-9_]+)$"
PERCENT = {"max_digits": 20, "decimal_places": 4}


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(**MONEY, allow_null=True, **kwargs)


class LimitSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The liveTrading.portfolio key.")
    unit = serializers.CharField()
    limit = _money(help_text="null: this limit is off.")
    value = _money(help_text="Where the scope stands now (null: checked per order, or no "
                             "equity yet).")
    remaining = _money()
    used_percent = serializers.DecimalField(**PERCENT, allow_null=True)
    detail = serializers.CharField(allow_blank=True)


class TripSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.CharField()
    code = serializers.ChoiceField(choices=TripCode.choices)
    tripped_at = serializers.DateTimeField()
    message = serializers.CharField()
    numbers = serializers.JSONField(help_text="Equity, the baseline, the loss and the limit.")
    state_before = serializers.ChoiceField(choices=TradingState.choices)
    state_after = serializers.ChoiceField(choices=TradingState.choices)
    close_all = serializers.BooleanField()
    closes_requested = serializers.IntegerField()
    rearmed_at = serializers.DateTimeField(allow_null=True)
    rearmed_by = serializers.CharField(allow_blank=True)
    rearm_reason = serializers.CharField(allow_blank=True)


class ScopeSerializer(serializers.Serializer):
    scope = serializers.CharField(help_text="global, account:NAME or strategy:NAME")
    kind = serializers.ChoiceField(choices=ScopeKind.choices)
    name = serializers.CharField(allow_blank=True)
    state = serializers.ChoiceField(choices=TradingState.choices)
    reason = serializers.CharField(allow_blank=True)
    by = serializers.CharField(allow_blank=True, help_text="Who set the state.")
    since = serializers.DateTimeField()
    trip = TripSerializer(allow_null=True, help_text="The open trip, until re-armed.")
    equity = _money(help_text="Live equity: balance + unrealised PnL at the marks (platform "
                              "and accounts).")
    equity_at = serializers.DateTimeField(allow_null=True)
    equity_age_seconds = serializers.FloatField(allow_null=True)
    marks_as_of = serializers.DateTimeField(
        allow_null=True, help_text="The oldest mark price the equity rests on.")
    marks_age_seconds = serializers.FloatField(allow_null=True)
    unmarked_positions = serializers.IntegerField(
        help_text="Positions without any mark, valued at their entry price.")
    day = serializers.DateField(allow_null=True, help_text="The trading day (TIME_ZONE).")
    day_start_equity = _money()
    peak_equity = _money()
    counted_at = serializers.DateTimeField(
        allow_null=True, help_text="When positions and exposure were last counted exactly.")
    on_trip = serializers.ChoiceField(choices=TradingState.choices, allow_null=True)
    close_all_on_trip = serializers.BooleanField(allow_null=True)
    limits = LimitSerializer(many=True)


class RefusalSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    strategy = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    quantity = serializers.DecimalField(**QTY, read_only=True)
    price = serializers.DecimalField(**MONEY, read_only=True, allow_null=True)

    class Meta:
        model = OrderRefusal
        fields = ["id", "created_at", "reason_code", "scope", "message", "numbers", "account",
                  "strategy", "position", "symbol", "side", "purpose", "quantity", "price",
                  "requested_by"]
        read_only_fields = fields


class GuardOverviewSerializer(serializers.Serializer):
    scopes = ScopeSerializer(many=True)
    recent_trips = TripSerializer(many=True, help_text="The last 20 trips, newest first.")
    recent_refusals = RefusalSerializer(many=True,
                                        help_text="The last 20 refused orders, newest first.")


class GuardOverviewApi(StrictApi, APIView):
    """Every scope: its state, who set it, when and why, its open trip, its live equity and
    the distance to each limit; the latest trips and refused orders."""

    @extend_schema(tags=[TAG], responses=GuardOverviewSerializer,
                   summary="Trading states and limits of every scope")
    def get(self, request: Request) -> Response:
        return Response(GuardOverviewSerializer(selectors.guard_overview()).data)


class GuardStateApi(StrictApi, APIView):
    """Staff set a scope's trading state with a reason; ACTIVE or REDUCING re-arms a tripped
    scope (its baselines restart from the equity now). Audited."""

    class StateRequestSerializer(StrictSerializer):
        scope = StrictCharField(max_length=200, validators=[RegexValidator(SCOPE_PATTERN)],
                                help_text="global, account:NAME or strategy:NAME")
        state = StrictChoiceField(choices=TradingState.choices)
        reason = StrictCharField(max_length=255, visible=True,
                                 help_text="Why: shown to every operator and audited.")

    @extend_schema(tags=[TAG], request=StateRequestSerializer, responses={
        200: ScopeSerializer, 404: OpenApiResponse(description="No such account or strategy.")},
        summary="Set a scope's trading state (re-arms a tripped scope)")
    def post(self, request: Request) -> Response:
        given = self.StateRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        scope = scope_state_set(scope=scope_get(given.validated_data["scope"]),
                                state=given.validated_data["state"],
                                reason=given.validated_data["reason"],
                                actor=request.user.get_username())
        [overview] = selectors.scopes_overview(only=scope)
        return Response(ScopeSerializer(overview).data)


class TripListApi(StrictApi, generics.ListAPIView):
    """The trip history, newest first; filter by scope, trip code and whether re-armed."""

    class TripFilterSerializer(StrictQuerySerializer):
        scope = StrictCharField(required=False, max_length=200,
                                help_text="global, account:NAME or strategy:NAME")
        trip_code = StrictChoiceField(choices=TripCode.choices, required=False)
        open = StrictBooleanField(required=False, allow_null=True, default=None,
                                  help_text="true: not re-armed yet; false: re-armed.")

    query_serializer_class = TripFilterSerializer
    serializer_class = TripSerializer

    def get_queryset(self):
        trips = selectors.trips()
        if self.params.get("scope"):
            trips = trips.filter(selectors.scope_named(self.params["scope"], prefix="scope__"))
        if self.params.get("trip_code"):
            trips = trips.filter(code=self.params["trip_code"])
        if self.params.get("open") is not None:
            trips = trips.filter(rearmed_at__isnull=self.params["open"])
        return trips

    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(
            TripSerializer([selectors.trip_payload(trip) for trip in page], many=True).data)

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class RefusalListApi(StrictApi, generics.ListAPIView):
    """Orders the gate refused, newest first; filter by reason code and scope."""

    class RefusalFilterSerializer(StrictQuerySerializer):
        reason_code = StrictChoiceField(choices=ReasonCode.choices, required=False)
        scope = StrictCharField(required=False, max_length=100)

    query_serializer_class = RefusalFilterSerializer
    serializer_class = RefusalSerializer

    def get_queryset(self):
        refusals = selectors.refusals()
        for name in ("reason_code", "scope"):
            if self.params.get(name):
                refusals = refusals.filter(**{name: self.params[name]})
        return refusals

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
