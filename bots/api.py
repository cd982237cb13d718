"""Bots API: connections (staff write, anyone signed in reads) and the two webhooks.

The webhooks take no token (their senders cannot add a header): the body carries
the secret, checked before anything else is read. Any mistake in name or secret is
the same 401, which does not say which part was wrong. Then the body is validated
strictly (400 naming the field) and one service acts on it.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bots.connections import (
    bot_connection_authenticate,
    bot_connection_create,
    bot_connection_rotate_secret,
    signal_source_authenticate,
)
from bots.freqtrade import webhook_block, webhook_path
from bots.inputs import FreqtradeWebhookSerializer, TradeSignalSerializer
from bots.models import BOT_CREDENTIAL_PREFIX, BotConnection, BotKind
from bots.selectors import connection_problems, connections_with_positions
from bots.services import bot_webhook_receive, bots_config
from bots.trade_signals import trade_signal_take
from lifecycle.models import Strategy
from tradingsite.api_base import ReadModelSerializer
from tradingsite.api_input import (
    EmptyBody,
    StrictApi,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictSerializer,
    StrictSlugRelatedField,
)

TAG = "bots"
UNAUTHORIZED = {"detail": "Invalid webhook credentials.", "code": "not_authenticated"}
NAME_PATTERN = r"^[-a-zA-Z0-9_]+$"
CREDENTIAL_ENV_PATTERN = rf"^{BOT_CREDENTIAL_PREFIX}[A-Z0-9_]+$"
CREDENTIAL_ENV_MESSAGE = (f"Enter an environment variable name starting with "
                          f"{BOT_CREDENTIAL_PREFIX} (capital letters, digits, _).")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
API_URL_PATTERN = (rf"^(https://({_LABEL}\.)+[a-z]{{2,63}}|https://{_OCTET}(\.{_OCTET}){{3}}"
                   r"|http://(127\.0\.0\.1|localhost))(:[1-9][0-9]{0,4})?"
                   r"(/[A-Za-z0-9._~-]+)*/?$")


class PatternField(StrictCharField):
    """Text matching ``pattern`` (published in the schema, enforced here)."""

    def __init__(self, pattern: str, *, message: str, **kwargs: Any):
        self.pattern, self.message = pattern, message
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not re.fullmatch(self.pattern.removeprefix("^").removesuffix("$"), value):
            raise serializers.ValidationError(self.message, code="pattern")
        return value


class PatternFieldSchema(OpenApiSerializerFieldExtension):
    target_class = PatternField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "pattern": self.target.pattern,
                "maxLength": self.target.max_length}


class BotConnectionSerializer(ReadModelSerializer):
    """A connection with its health; secrets only by their first characters."""

    strategy = serializers.SlugRelatedField(slug_field="name", read_only=True)
    webhook_path = serializers.SerializerMethodField()
    credentials = serializers.CharField(source="credentials_status", read_only=True)
    healthy = serializers.SerializerMethodField()
    problems = serializers.SerializerMethodField()
    open_positions = serializers.IntegerField(read_only=True, allow_null=True)
    bot_close_timeout_seconds = serializers.SerializerMethodField()
    fallback_direct_close = serializers.SerializerMethodField()
    bot_sync_seconds = serializers.SerializerMethodField()

    class Meta:
        model = BotConnection
        fields = ["id", "name", "kind", "strategy", "api_url", "username_env", "password_env",
                  "credentials", "webhook_path", "webhook_secret_prefix", "enabled", "healthy",
                  "problems", "bot_state", "bot_state_at", "last_webhook_at",
                  "last_webhook_event", "last_sync_at", "last_sync_error", "open_positions",
                  "bot_close_timeout_seconds", "fallback_direct_close", "bot_sync_seconds",
                  "created_at"]
        read_only_fields = fields

    def get_webhook_path(self, connection: BotConnection) -> str:
        return webhook_path(connection)

    def get_healthy(self, connection: BotConnection) -> bool:
        return not connection_problems(connection, timezone.now())

    def get_problems(self, connection: BotConnection) -> list[str]:
        return connection_problems(connection, timezone.now())

    def get_bot_close_timeout_seconds(self, connection: BotConnection) -> float:
        return bots_config(connection).bot_close_timeout_seconds

    def get_fallback_direct_close(self, connection: BotConnection) -> bool:
        return bots_config(connection).fallback_direct_close

    def get_bot_sync_seconds(self, connection: BotConnection) -> float:
        return bots_config(connection).bot_sync_seconds


class IssuedSecretSerializer(serializers.Serializer):
    connection = BotConnectionSerializer()
    webhook_secret = serializers.CharField(help_text="Shown this once: only its digest is kept.")
    webhook = serializers.JSONField(help_text="The bot config's ``webhook`` section, ready to "
                                              "paste (the secret filled in).")


def _issued(request: Request, connection: BotConnection, secret: str) -> dict[str, Any]:
    fresh = connections_with_positions().get(pk=connection.pk)
    return IssuedSecretSerializer({
        "connection": fresh, "webhook_secret": secret,
        "webhook": webhook_block(connection, secret=secret,
                                 base_url=request.build_absolute_uri("/"))}).data


class BotConnectionListApi(StrictApi, ListModelMixin, GenericAPIView):
    """Bot connections with their health (paginated); staff add one (its webhook secret is
    shown once)."""

    serializer_class = BotConnectionSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[BotConnection]:
        return connections_with_positions()

    def lists(self) -> bool:
        return self.request.method == "GET"  # a POST takes no paging parameters

    class CreateSerializer(StrictSerializer):
        """Exactly the model's rules, as patterns the schema publishes; a name already taken
        is a 409."""

        name = PatternField(NAME_PATTERN, max_length=40,
                            message="Enter a slug: letters, digits, - and _.",
                            help_text="A slug: letters, digits, - and _ (the webhook's "
                                      "address).")
        kind = StrictChoiceField(choices=BotKind.choices, default=BotKind.FREQTRADE)
        strategy = StrictSlugRelatedField(slug_field="name", queryset=Strategy.objects.all())
        api_url = PatternField(API_URL_PATTERN, max_length=200, message=(
                               "Enter https://host[:port][/path], or http:// to 127.0.0.1 or "
                               "localhost only (the bot's credentials are sent there)."),
                               help_text="The bot's REST API: https, or http to 127.0.0.1 or "
                                         "localhost (its credentials are sent there).")
        username_env = PatternField(CREDENTIAL_ENV_PATTERN, max_length=128,
                                    message=CREDENTIAL_ENV_MESSAGE,
                                    help_text="Environment variable of the REST user name.")
        password_env = PatternField(CREDENTIAL_ENV_PATTERN, max_length=128,
                                    message=CREDENTIAL_ENV_MESSAGE,
                                    help_text="Environment variable of the REST password.")
        enabled = StrictBooleanField(default=True)

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            candidate = BotConnection(**data, webhook_secret_prefix="-",
                                      webhook_secret_digest="-")
            try:  # the patterns are the model's rules: this holds, it is checked again
                candidate.full_clean(validate_unique=False)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.message_dict) from None
            return data

    @extend_schema(tags=[TAG])
    def get(self, request: Request) -> Response:
        return self.list(request)

    @extend_schema(tags=[TAG], request=CreateSerializer, responses={
        201: IssuedSecretSerializer,
        409: OpenApiResponse(description="A connection of that name exists.")})
    def post(self, request: Request) -> Response:
        given = self.CreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        connection, secret = bot_connection_create(**given.validated_data,
                                                   actor=request.user.get_username())
        return Response(_issued(request, connection, secret), status=status.HTTP_201_CREATED)


class BotConnectionDetailApi(StrictApi, APIView):
    """One bot connection with its health."""

    @extend_schema(tags=[TAG], responses=BotConnectionSerializer)
    def get(self, request: Request, connection_id: int) -> Response:
        connection = get_object_or_404(connections_with_positions(), pk=connection_id)
        return Response(BotConnectionSerializer(connection).data)


class RotateWebhookSecretApi(StrictApi, APIView):
    """Replace a connection's webhook secret (staff); the old one stops working at once."""

    @extend_schema(tags=[TAG], request=None, responses=IssuedSecretSerializer)
    def post(self, request: Request, connection_id: int) -> Response:
        EmptyBody(data=request.data).is_valid(raise_exception=True)
        connection = get_object_or_404(BotConnection, pk=connection_id)
        secret = bot_connection_rotate_secret(connection, actor=request.user.get_username())
        return Response(_issued(request, connection, secret))


class _SecretAuthenticatedApi(StrictApi, APIView):
    """A webhook: no token or session; the body's secret authenticates it."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    body_secret_auth = True  # (the API's auth tests check these routes by their own rule)

    @staticmethod
    def secret_of(body: Any) -> Any:
        return body.get("secret") if isinstance(body, dict) else None


WEBHOOK_RESULT = inline_serializer("BotWebhookResult", fields={
    "event": serializers.CharField(),
    "trade_id": serializers.IntegerField(allow_null=True),
    "position": serializers.IntegerField(allow_null=True,
                                         help_text="The supervised position of the trade."),
    "state": serializers.CharField(allow_null=True),
    "created": serializers.BooleanField(help_text="True: the trade was handed over now."),
    "note": serializers.CharField(),
})


class BotWebhookApi(_SecretAuthenticatedApi):
    """freqtrade's webhook (``"format": "json"``): entries, exits and status of the bot.

    ``entry_fill`` hands the trade over (201; a repeat 200; the same trade id with
    another pair, side, amount, price or time 409), ``exit_fill`` reduces or closes its
    position with the bot's price, reason and PnL, ``status`` records the bot's state
    (``process died`` raises an alert). The README's ``webhook`` block sends exactly this.
    """

    @extend_schema(tags=[TAG], auth=[], request=FreqtradeWebhookSerializer, responses={
        200: WEBHOOK_RESULT, 201: OpenApiResponse(WEBHOOK_RESULT, description="Handed over now."),
        401: OpenApiResponse(OpenApiTypes.OBJECT, description="Unknown or disabled "
                             "connection, or a wrong secret (the answer does not say which).")})
    def post(self, request: Request, name: str) -> Response:
        connection = bot_connection_authenticate(name, self.secret_of(request.data))
        if connection is None:
            return Response(UNAUTHORIZED, status=status.HTTP_401_UNAUTHORIZED)
        given = FreqtradeWebhookSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        result = bot_webhook_receive(connection, given.validated_data)
        return Response(result.as_dict(),
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


SIGNAL_RESULT = inline_serializer("TradeSignalResult", fields={
    "signal_id": serializers.CharField(),
    "action": serializers.CharField(),
    "order": serializers.JSONField(allow_null=True,
                                   help_text="The entry order an open recorded."),
    "closes": serializers.JSONField(help_text="The close actions a close queued "
                                              "(position, action_id, created)."),
})


class TradeSignalApi(_SecretAuthenticatedApi):
    """A trade signal for a strategy (TradingView-style alert); the secret is in the body.

    202: the entry order was recorded (the workers send it) or the closes queued;
    200: a repeated ``signal_id`` (nothing new); 409: another body under the same id,
    trading halted, or nothing to close.
    """

    @extend_schema(tags=[TAG], auth=[], request=TradeSignalSerializer, responses={
        202: SIGNAL_RESULT,
        200: OpenApiResponse(SIGNAL_RESULT, description="This signal_id was taken before."),
        401: OpenApiResponse(OpenApiTypes.OBJECT, description="Unknown strategy, no enabled "
                             "signal source, or a wrong secret (the answer does not say "
                             "which).")})
    def post(self, request: Request, strategy: str) -> Response:
        source = signal_source_authenticate(strategy, self.secret_of(request.data))
        if source is None:
            return Response(UNAUTHORIZED, status=status.HTTP_401_UNAUTHORIZED)
        given = TradeSignalSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        answer, code = trade_signal_take(source, given.validated_data)
        return Response(answer, status=code)
