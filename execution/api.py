"""Execution API: orders (list, detail, cancel) and the action queue.

Placing an entry for a strategy is ``lifecycle.api.PlaceOrderApi`` (same route).

One class per operation; each validates its input, calls one selector or service
and serialises the result. Reads need an authenticated user, writes staff
(``IsStaffOrReadOnly``). Execution metrics are served by analytics from
``analytics.execution_metrics``.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.models import (
    Action,
    ActionKind,
    ActionState,
    Order,
    OrderPurpose,
    OrderStatus,
)
from execution.selectors import action_list, order_list
from execution.services import order_request_cancel
from tradingsite.api_base import ReadModelSerializer
from tradingsite.api_input import (
    EmptyBody,
    StrictApi,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictQuerySerializer,
)

TAG = "execution"


class OrderSerializer(ReadModelSerializer):
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


class OrderListApi(StrictApi, generics.ListAPIView):
    """Orders, newest first; filter by status, purpose, account name, symbol."""

    serializer_class = OrderSerializer

    class OrderFilterSerializer(StrictQuerySerializer):
        status = StrictChoiceField(choices=OrderStatus.choices, required=False)
        purpose = StrictChoiceField(choices=OrderPurpose.choices, required=False)
        account = StrictCharField(required=False)
        symbol = StrictCharField(required=False)
        active = StrictBooleanField(required=False, allow_null=True, default=None,
                                    help_text="true: not final yet; false: final.")

    query_serializer_class = OrderFilterSerializer

    def get_queryset(self):
        return order_list(**self.params)

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class OrderDetailApi(StrictApi, generics.RetrieveAPIView):
    serializer_class = OrderSerializer
    queryset = Order.objects.select_related("account", "strategy")

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class CancelOrderApi(StrictApi, APIView):
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
        EmptyBody(data=request.data).is_valid(raise_exception=True)
        order = get_object_or_404(Order.objects.select_related("account"), pk=order_id)
        action, created = order_request_cancel(order, actor=request.user.get_username())
        return Response(ActionSerializer(action).data,
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class ActionListApi(StrictApi, generics.ListAPIView):
    """The action queue, newest first; filter by state and kind."""

    serializer_class = ActionSerializer

    class ActionFilterSerializer(StrictQuerySerializer):
        state = StrictChoiceField(choices=ActionState.choices, required=False)
        kind = StrictChoiceField(choices=ActionKind.choices, required=False)

    query_serializer_class = ActionFilterSerializer

    def get_queryset(self):
        return action_list(**self.params)

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
