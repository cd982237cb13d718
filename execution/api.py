"""Execution API: orders (list, detail, cancel) and the action queue.

Placing an entry for a strategy is ``lifecycle.api.PlaceOrderApi`` (same route).

One class per operation; each validates its input, calls one selector or service
and serialises the result. Reads need an authenticated user, writes staff
(``IsStaffOrReadOnly``). Execution metrics are served by analytics from
``analytics.execution_metrics``.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution.models import (
    AccountStream,
    Action,
    ActionKind,
    ActionState,
    ExchangeAccount,
    Order,
    OrderPurpose,
    OrderStatus,
)
from execution.selectors import account_list, action_list, order_list
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
from tradingsite.domain import MONEY

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


class BalanceLineSerializer(serializers.Serializer):
    free = serializers.DecimalField(**MONEY)
    used = serializers.DecimalField(**MONEY)
    total = serializers.DecimalField(**MONEY)


class AccountSyncSerializer(serializers.Serializer):
    streams = serializers.BooleanField()
    reconcile_interval_seconds = serializers.FloatField()
    mark_refresh_seconds = serializers.FloatField()
    adopt_external_positions = serializers.BooleanField()


class StreamStatusSerializer(ReadModelSerializer):
    """The account's live link: who owns it, how it is doing, ages in seconds."""

    last_message_age_seconds = serializers.SerializerMethodField()
    last_reconcile_age_seconds = serializers.SerializerMethodField()
    owner_alive = serializers.SerializerMethodField(
        help_text="The owner renewed its lease in time (false: it died; another process "
                  "takes the account over).")

    class Meta:
        model = AccountStream
        fields = ["mode", "owner", "owner_alive", "owner_since", "lease_until", "takeovers",
                  "connected", "connected_at", "last_message_at", "last_message_age_seconds",
                  "messages", "reconnects", "last_reconcile_at", "last_reconcile_age_seconds",
                  "last_mark_at", "last_error", "last_error_at"]
        read_only_fields = fields

    def _now(self):
        from django.utils import timezone

        return self.context.setdefault("now", timezone.now())

    def _age(self, moment) -> float | None:
        return None if moment is None else round(max((self._now() - moment).total_seconds(),
                                                     0.0), 1)

    def get_last_message_age_seconds(self, stream: AccountStream) -> float | None:
        return self._age(stream.last_message_at)

    def get_last_reconcile_age_seconds(self, stream: AccountStream) -> float | None:
        return self._age(stream.last_reconcile_at)

    def get_owner_alive(self, stream: AccountStream) -> bool:
        return bool(stream.owner) and stream.lease_until is not None and (
            stream.lease_until >= self._now())


class AccountSerializer(ReadModelSerializer):
    """An exchange account with its stream's status and its last balances."""

    sync = serializers.SerializerMethodField()
    stream = serializers.SerializerMethodField()
    balances = serializers.SerializerMethodField()
    balances_at = serializers.SerializerMethodField()

    class Meta:
        model = ExchangeAccount
        fields = ["id", "name", "exchange_id", "testnet", "market_type", "quote_currency",
                  "enabled", "sync", "stream", "balances", "balances_at"]
        read_only_fields = fields

    @staticmethod
    def _stream(account: ExchangeAccount) -> AccountStream | None:
        return getattr(account, "stream", None)

    @extend_schema_field(AccountSyncSerializer)
    def get_sync(self, account: ExchangeAccount) -> dict:
        return AccountSyncSerializer(account.sync_settings()).data

    @extend_schema_field(StreamStatusSerializer(allow_null=True))
    def get_stream(self, account: ExchangeAccount) -> dict | None:
        stream = self._stream(account)
        return StreamStatusSerializer(stream, context=self.context).data if stream else None

    @extend_schema_field(serializers.DictField(child=BalanceLineSerializer()))
    def get_balances(self, account: ExchangeAccount) -> dict:
        stream = self._stream(account)
        return {currency: BalanceLineSerializer(line).data for currency, line in
                sorted((stream.balances if stream else {}).items())}

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_balances_at(self, account: ExchangeAccount) -> str | None:
        stream = self._stream(account)
        return serializers.DateTimeField().to_representation(stream.balances_at) if (
            stream and stream.balances_at) else None


class AccountListApi(StrictApi, generics.ListAPIView):
    """Exchange accounts with their live stream status (owner, connection, last message and
    reconcile ages, reconnects) and the balances last read over REST."""

    serializer_class = AccountSerializer

    def get_queryset(self):
        return account_list()

    @extend_schema(tags=[TAG])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
