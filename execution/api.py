"""Execution API: orders (list, detail, place, cancel) and the action queue.

One class per operation; each validates its input, calls one selector or service
and serialises the result. Reads need an authenticated user, writes staff
(``IsStaffOrReadOnly``). Execution metrics are served by analytics from
``analytics.execution_metrics``.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.models import (
    MONEY,
    QTY,
    Action,
    ActionKind,
    ActionState,
    ExchangeAccount,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
)
from execution.pipeline import Next, order_submit
from execution.services import order_request_cancel
from lifecycle.models import Strategy
from tradingsite.api_base import ReadModelSerializer

TAG = "execution"


class OrderSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="name", read_only=True)
    strategy = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = Order
        fields = ["id", "client_order_id", "exchange_order_id", "account", "strategy", "position",
                  "action", "replaces", "symbol", "side", "order_type", "purpose", "reduce_only",
                  "quantity", "price", "expected_price", "filled_quantity", "average_fill_price",
                  "fee", "fee_currency", "status", "slippage_percent",
                  "estimated_slippage_percent", "attempts", "retries", "timed_out",
                  "latency_ms", "last_error", "error_code", "next_attempt_at", "in_doubt_since",
                  "doubt_lookups", "lease_holder", "lease_until", "created_at",
                  "submitted_at", "acknowledged_at", "filled_at", "finalized_at"]
        read_only_fields = fields


class ActionSerializer(ReadModelSerializer):
    class Meta:
        model = Action
        fields = ["id", "kind", "state", "position", "order", "reason", "requested_by",
                  "idempotency_key", "attempts", "result", "error", "lease_holder",
                  "lease_until", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class OrderListApi(generics.ListAPIView):
    """Orders, newest first; filter by status, purpose, account name, symbol."""

    serializer_class = OrderSerializer

    class OrderFilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=OrderStatus.choices, required=False)
        purpose = serializers.ChoiceField(choices=OrderPurpose.choices, required=False)
        account = serializers.CharField(required=False)
        symbol = serializers.CharField(required=False)
        active = serializers.BooleanField(required=False, allow_null=True, default=None,
                                          help_text="true: not final yet; false: final.")

    def get_queryset(self):
        filters = self.OrderFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        orders = Order.objects.select_related("account", "strategy").order_by("-created_at",
                                                                              "-pk")
        for field, lookup in (("status", "status"), ("purpose", "purpose"),
                              ("account", "account__name"), ("symbol", "symbol")):
            if data.get(field):
                orders = orders.filter(**{lookup: data[field]})
        if data.get("active") is not None:
            statuses = OrderStatus.active() if data["active"] else OrderStatus.final()
            orders = orders.filter(status__in=statuses)
        return orders

    @extend_schema(tags=[TAG], parameters=[OrderFilterSerializer])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class OrderDetailApi(generics.RetrieveAPIView):
    serializer_class = OrderSerializer
    queryset = Order.objects.select_related("account", "strategy")

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class PlaceOrderApi(APIView):
    """Send an entry order through the pipeline (staff); its fill opens the position.

    Answers 202 at once: placement, retries and polling run on the workers; 409 while
    trading is halted (``halt_trading``, or a shutdown in progress).
    """

    class PlaceOrderSerializer(serializers.Serializer):
        strategy = serializers.SlugRelatedField(slug_field="name",
                                                queryset=Strategy.objects.select_related(
                                                    "account"))
        symbol = serializers.CharField(max_length=64)
        side = serializers.ChoiceField(choices=OrderSide.choices)
        quantity = serializers.DecimalField(**QTY, min_value=Decimal("1e-12"))
        order_type = serializers.ChoiceField(choices=OrderType.choices, default=OrderType.MARKET)
        price = serializers.DecimalField(**MONEY, min_value=Decimal("1e-10"), required=False,
                                         allow_null=True, default=None)
        expected_price = serializers.DecimalField(
            **MONEY, min_value=Decimal("1e-10"), required=False, allow_null=True, default=None,
            help_text="The price the decision was based on: slippage is measured against it.")

        def validate(self, data):
            if data["order_type"] == OrderType.LIMIT and data.get("price") is None:
                raise serializers.ValidationError({"price": "a limit order needs a price"})
            return data

    @extend_schema(tags=[TAG], request=PlaceOrderSerializer, responses={
        202: OrderSerializer,
        409: OpenApiResponse(description="Trading is halted: new entries are refused.")})
    def post(self, request: Request) -> Response:
        from execution.tasks import schedule_next

        data = self.PlaceOrderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        strategy: Strategy = data.validated_data.pop("strategy")
        account: ExchangeAccount = strategy.account
        with transaction.atomic():
            order = order_submit(account=account, strategy=strategy, **data.validated_data)
            transaction.on_commit(lambda: schedule_next(Next(order, 0.0, "placed by API")))
        return Response(OrderSerializer(order).data, status=status.HTTP_202_ACCEPTED)


class CancelOrderApi(APIView):
    """Queue the cancel of an active order (staff): 202 with the ``cancel_order`` action.

    Nothing is sent in the request: the action queue marks the order for cancelling and
    the cancel and its read-back run on the account's queue; the action is done when
    the exchange has decided (follow it under ``/api/execution/actions``). A repeated
    request while the cancel is queued answers 200 with the same action; 409 once the
    order is final.
    """

    @extend_schema(tags=[TAG], request=None, responses={
        202: ActionSerializer, 200: ActionSerializer,
        409: OpenApiResponse(description="The order is already final.")})
    def post(self, request: Request, order_id: int) -> Response:
        order = get_object_or_404(Order.objects.select_related("account"), pk=order_id)
        action, created = order_request_cancel(order, actor=request.user.get_username())
        return Response(ActionSerializer(action).data,
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class ActionListApi(generics.ListAPIView):
    """The action queue, newest first; filter by state and kind."""

    serializer_class = ActionSerializer

    class ActionFilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=ActionState.choices, required=False)
        kind = serializers.ChoiceField(choices=ActionKind.choices, required=False)

    def get_queryset(self):
        filters = self.ActionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return Action.objects.filter(**filters.validated_data).order_by("-created_at", "-pk")

    @extend_schema(tags=[TAG], parameters=[ActionFilterSerializer])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
