"""Bot connections, the bot trades they hand over, and the signal senders.

A *bot connection* is a trading bot the traders already run (freqtrade today): the
platform supervises the positions its trades become (``PositionSource.BOT``) and
closes them through the bot, never behind its back. Credentials of the bot's REST
API come from environment variables named on the connection (prefix ``BOT_``);
webhook secrets are stored as a SHA-256 digest and shown once, when issued.
"""

from __future__ import annotations

import os

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Substr
from django.db.models.lookups import Exact
from django.utils import timezone

from execution.models import credential_env_error, validate_base_url

BOT_CREDENTIAL_PREFIX = "BOT_"
BOT_CREDENTIAL_FIELDS = ("username_env", "password_env")
SECRET_PREFIX_LENGTH = 8


def validate_bot_credential_env(name: str) -> None:
    if error := credential_env_error(name, BOT_CREDENTIAL_PREFIX):
        raise ValidationError(error, code="credential_env")


def _prefixed(field: str, prefix: str) -> Q:
    return Q(**{field: ""}) | Q(Exact(Substr(field, 1, len(prefix)), Value(prefix)))


class BotKind(models.TextChoices):
    FREQTRADE = "freqtrade", "freqtrade"


class BotState(models.TextChoices):
    """What the platform last heard of the bot (its status webhooks and the sync)."""

    UNKNOWN = "unknown", "Not heard from yet"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused (manages trades, no new entries)"
    STOPPED = "stopped", "Stopped"
    DIED = "died", "Process died"
    UNREACHABLE = "unreachable", "REST API unreachable"

    @classmethod
    def down(cls) -> list[str]:
        """States in which the bot does not manage its trades: an alert is open."""
        return [cls.STOPPED, cls.DIED, cls.UNREACHABLE]


class BotConnection(models.Model):
    """A bot whose trades the platform supervises, and how to reach it."""

    name = models.SlugField(
        max_length=40, unique=True,
        help_text="Also the webhook's address: /api/bots/<name>/webhook.")
    kind = models.CharField(max_length=16, choices=BotKind.choices, default=BotKind.FREQTRADE)
    strategy = models.ForeignKey(
        "lifecycle.Strategy", on_delete=models.PROTECT, related_name="bot_connections",
        help_text="The strategy the bot feeds: its account, holding limits and live-trading "
                  "overrides (bots.botCloseTimeoutSeconds, …) apply to the bot's positions.")
    api_url = models.URLField(
        validators=[validate_base_url],
        help_text="The bot's REST API, e.g. http://127.0.0.1:8080 (https, or plain http to a "
                  "loopback host only: its credentials are sent there).")
    username_env = models.CharField(
        max_length=128, validators=[validate_bot_credential_env],
        help_text="Name of the environment variable that holds the REST API user name "
                  f"(starts with {BOT_CREDENTIAL_PREFIX}).")
    password_env = models.CharField(
        max_length=128, validators=[validate_bot_credential_env],
        help_text="Name of the environment variable that holds the REST API password "
                  f"(starts with {BOT_CREDENTIAL_PREFIX}).")
    webhook_secret_prefix = models.CharField(max_length=SECRET_PREFIX_LENGTH, editable=False)
    webhook_secret_digest = models.CharField(max_length=64, editable=False)
    enabled = models.BooleanField(
        default=True, help_text="A disabled connection refuses webhooks (401) and is not synced; "
                                "its positions stay supervised.")
    bot_state = models.CharField(max_length=12, choices=BotState.choices,
                                 default=BotState.UNKNOWN, editable=False)
    bot_state_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_webhook_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_webhook_event = models.CharField(max_length=16, blank=True, default="", editable=False)
    last_sync_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When a sync last read the bot's trades.")
    last_sync_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_error = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            *(models.CheckConstraint(condition=_prefixed(name, BOT_CREDENTIAL_PREFIX),
                                     name=f"bot_{name}_prefixed")
              for name in BOT_CREDENTIAL_FIELDS),
            models.CheckConstraint(condition=Q(kind__in=BotKind.values), name="bot_kind_valid"),
            models.CheckConstraint(condition=Q(bot_state__in=BotState.values),
                                   name="bot_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} → {self.strategy})" if self.strategy_id else self.name

    def routing_errors(self) -> list[str]:
        """Why the bot's credentials may not be read or sent (empty when they may)."""
        errors = [f"{name}: {error}" for name in BOT_CREDENTIAL_FIELDS
                  if (error := credential_env_error(getattr(self, name), BOT_CREDENTIAL_PREFIX))]
        try:
            validate_base_url(self.api_url)
        except ValidationError as exc:
            errors.append(f"api_url: {exc.messages[0]}")
        return errors

    def credentials(self) -> tuple[str, str]:
        """(user name, password) from the environment; never stored, logged or shown.

        Only variables with the bot prefix are read, whatever the row says.
        """
        values = []
        for env_name in (self.username_env, self.password_env):
            ok = env_name and credential_env_error(env_name, BOT_CREDENTIAL_PREFIX) is None
            values.append(os.environ.get(env_name, "") if ok else "")
        return values[0], values[1]

    def credentials_status(self) -> str:
        """What the operator may see: the variables' names and whether they are set."""
        return ", ".join(
            f"{label}: ${env_name} ({'set' if os.environ.get(env_name) else 'missing'})"
            for label, env_name in (("user", self.username_env), ("password", self.password_env)))


class BotTrade(models.Model):
    """One trade of a bot and the position the platform supervises for it.

    Unique per (connection, the bot's trade id): a webhook, its retries and the sync
    all find the same position. The ``exit_*`` fields follow the close the platform
    asked the bot for (``bots.closing``).
    """

    class AdoptedBy(models.TextChoices):
        WEBHOOK = "webhook", "Entry fill webhook"
        SYNC = "sync", "Sync (the webhook was lost)"

    connection = models.ForeignKey(BotConnection, on_delete=models.PROTECT, related_name="trades")
    trade_id = models.PositiveBigIntegerField(help_text="The bot's own trade id.")
    position = models.OneToOneField("lifecycle.Position", on_delete=models.PROTECT,
                                    related_name="bot_trade")
    adopted_by = models.CharField(max_length=8, choices=AdoptedBy.choices)
    exit_action = models.ForeignKey(
        "execution.Action", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The platform's close this trade's exit answers to (if the platform asked).")
    exit_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the bot accepted the platform's forceexit.")
    exit_deadline = models.DateTimeField(
        null=True, blank=True, help_text="The exit is to be confirmed by then "
                                         "(bots.botCloseTimeoutSeconds).")
    exit_error = models.TextField(blank=True, default="")
    fallback_at = models.DateTimeField(
        null=True, blank=True, help_text="When the platform closed with its own order instead "
                                         "(bots.fallbackDirectClose).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "trade_id"],
                                    name="one_position_per_bot_trade"),
        ]

    def __str__(self) -> str:
        return f"{self.connection_id}#{self.trade_id} → position {self.position_id}"


class SignalSource(models.Model):
    """A sender of trade signals (TradingView-style alerts) for one strategy.

    It cannot set headers, so its secret travels in the body; stored as a digest.
    """

    strategy = models.OneToOneField("lifecycle.Strategy", on_delete=models.PROTECT,
                                    related_name="signal_source")
    secret_prefix = models.CharField(max_length=SECRET_PREFIX_LENGTH, editable=False)
    secret_digest = models.CharField(max_length=64, editable=False)
    enabled = models.BooleanField(default=True)
    last_signal_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["strategy__name"]

    def __str__(self) -> str:
        return f"signals → {self.strategy}"


class TradeSignal(models.Model):
    """A signal taken, by its sender's id: a repeat gets the first answer, nothing new.

    Refused signals (bad input, trading halted, nothing to close) are not kept: the
    id stays free.
    """

    source = models.ForeignKey(SignalSource, on_delete=models.CASCADE, related_name="signals")
    signal_id = models.CharField(max_length=128)
    request = models.JSONField(help_text="The signal as validated (without its secret).")
    answer = models.JSONField(help_text="What the sender was answered.")
    status_code = models.PositiveSmallIntegerField()
    order = models.ForeignKey("execution.Order", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["source", "signal_id"], name="one_signal_per_id"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.signal_id}"
