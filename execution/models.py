"""Exchange accounts, orders, the action queue and market data."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Substr
from django.db.models.lookups import Exact
from django.utils import timezone

from tradingsite.domain import MONEY, QTY, CloseReason
from tradingsite.numbers import plain

# Credentials come from environment variables whose names carry this prefix, so an
# account can never name (and send to an exchange) DATABASE_URL, SECRET_KEY, ...
CREDENTIAL_ENV_PREFIX = "EXCHANGE_"
_CREDENTIAL_ENV_CHARS = re.compile(r"[A-Z0-9_]+")
CREDENTIAL_FIELDS = ("api_key_env", "api_secret_env", "api_password_env")


def credential_env_error(name: str, prefix: str = CREDENTIAL_ENV_PREFIX) -> str | None:
    """Why ``name`` may not hold a credential (``None`` when it may; empty means unused).

    Each kind of credential has its own prefix (exchange accounts ``EXCHANGE_``), so a
    row can never name ``DATABASE_URL`` or ``SECRET_KEY`` and have it sent elsewhere.
    """
    if not name or (name.startswith(prefix) and _CREDENTIAL_ENV_CHARS.fullmatch(
            name[len(prefix):])):
        return None
    return (f"must be an environment variable name starting with {prefix} "
            f"(capital letters, digits, _), got {name[:64]!r}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url_error(url: str) -> str | None:
    """Why credentials may not be sent to ``url``: https only, plain http only to this machine."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if not host:
        return f"has no host: {url[:200]!r}"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _loopback(host):
        return None
    return f"must use https (plain http only for a loopback host), got {url[:200]!r}"


def validate_credential_env(name: str) -> None:
    if error := credential_env_error(name):
        raise ValidationError(error, code="credential_env")


def validate_base_url(url: str) -> None:
    if error := base_url_error(url):
        raise ValidationError(error, code="base_url")


class ExchangeAccount(models.Model):
    """Where orders go: a ccxt exchange id, or ``paper`` for the built-in simulator.

    Credentials are never stored: the account names the environment variables
    that hold them, and the adapter reads them at connect time.
    """

    PAPER = "paper"

    name = models.SlugField(max_length=64, unique=True)
    exchange_id = models.CharField(
        max_length=64, help_text="ccxt exchange id (e.g. 'bybit') or 'paper'.")
    testnet = models.BooleanField(default=False, help_text="Use the exchange's sandbox/testnet.")
    api_base_url = models.URLField(
        blank=True, default="", validators=[validate_base_url],
        help_text="Replaces every ccxt API base URL (testnets, proxies, local emulators); "
                  "https, or plain http to a loopback host only.")
    api_key_env = models.CharField(
        max_length=128, blank=True, default="", validators=[validate_credential_env],
        help_text="Name of the environment variable that holds the API key "
                  f"(starts with {CREDENTIAL_ENV_PREFIX}).")
    api_secret_env = models.CharField(
        max_length=128, blank=True, default="", validators=[validate_credential_env],
        help_text="Name of the environment variable that holds the API secret "
                  f"(starts with {CREDENTIAL_ENV_PREFIX}).")
    api_password_env = models.CharField(
        max_length=128, blank=True, default="", validators=[validate_credential_env],
        help_text="Name of the environment variable that holds the API passphrase, if any "
                  f"(starts with {CREDENTIAL_ENV_PREFIX}).")
    market_type = models.CharField(
        max_length=16, default="linear",
        help_text="ccxt market type to load (linear, spot, inverse).")
    quote_currency = models.CharField(max_length=16, default="USDT")
    starting_capital = models.DecimalField(
        **MONEY, default=Decimal("10000"),
        help_text="Equity at the start; returns and drawdown % are measured against it plus "
                  "realised PnL. For paper accounts this is also the opening balance.")
    paper_config = models.JSONField(
        default=dict, blank=True,
        help_text="Paper exchange only: market feed, fees, slippage model and fault injection.")
    order_queue = models.CharField(
        max_length=64, blank=True, default="",
        help_text="Celery queue for this account's order work (empty: the default queue).")
    live_trading = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of the live-trading accountSync section for this account (JSON, "
                  'camelCase or snake_case), e.g. {"accountSync": {"adoptExternalPositions": '
                  "true, \"markRefreshSeconds\": 2}}.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(starting_capital__gte=0),
                                   name="account_starting_capital_non_negative"),
            *(models.CheckConstraint(
                condition=Q(**{name: ""}) | Q(Exact(Substr(name, 1, len(CREDENTIAL_ENV_PREFIX)),
                                                    Value(CREDENTIAL_ENV_PREFIX))),
                name=f"account_{name}_prefixed") for name in CREDENTIAL_FIELDS),
        ]

    def __str__(self) -> str:
        mode = "paper" if self.is_paper else self.exchange_id + (" testnet" if self.testnet else "")
        return f"{self.name} ({mode})"

    @property
    def is_paper(self) -> bool:
        return self.exchange_id == self.PAPER

    @property
    def has_credentials(self) -> bool:
        return any(getattr(self, name) for name in CREDENTIAL_FIELDS)

    def routing_errors(self) -> list[str]:
        """Why this account's credentials may not be read or sent (empty when they may)."""
        errors = [f"{name}: {error}" for name in CREDENTIAL_FIELDS
                  if (error := credential_env_error(getattr(self, name)))]
        if self.has_credentials and (error := base_url_error(self.api_base_url)):
            errors.append(f"api_base_url: {error}")
        return errors

    def credentials(self) -> dict[str, str]:
        """Read credentials from the environment; never store or log the result.

        Only variables with the credential prefix are read, whatever the row says
        (it may have been written behind the model's validation).
        """
        creds = {}
        for key, env_name in (("apiKey", self.api_key_env), ("secret", self.api_secret_env),
                              ("password", self.api_password_env)):
            if env_name and credential_env_error(env_name) is None:
                value = os.environ.get(env_name, "")
                if value:
                    creds[key] = value
        return creds

    def credentials_status(self) -> str:
        """What the operator may see: which variables are named and whether they are set."""
        parts = []
        for label, env_name in (("key", self.api_key_env), ("secret", self.api_secret_env),
                                ("password", self.api_password_env)):
            if env_name:
                parts.append(f"{label}: ${env_name} ({'set' if os.environ.get(env_name) else 'missing'})")
        return ", ".join(parts) or "none (public data only)"

    def sync_config(self):  # -> AccountSyncConfig
        """The account's ``accountSync`` config (site config plus its overrides), validated."""
        from tradingsite.live_config import account_sync_config

        return account_sync_config(self.live_trading, account=self.name)

    def sync_settings(self):  # -> AccountSyncConfig
        """``sync_config``, never raising: overrides made invalid behind the platform's back
        (a row edited directly) fall back to the site config, and say so in the log."""
        from tradingsite.live_config import LiveConfigError, site_config

        try:
            return self.sync_config()
        except LiveConfigError as exc:
            logging.getLogger(__name__).error(
                "account %s: invalid live-trading overrides (%s); using the site config",
                self.name, exc)
            return site_config().account_sync

    def clean(self) -> None:
        from tradingsite.live_config import LiveConfigError

        try:
            self.sync_config()
        except LiveConfigError as exc:
            raise ValidationError({"live_trading": [f"{k}: {m}" for k, m in exc.errors]}) from exc
        if not self.is_paper and self.paper_config:
            raise ValidationError({"paper_config": "Only paper accounts take a paper_config."})
        if self.is_paper:
            from execution.exchanges.paper_config import PaperConfigError, parse_paper_config

            try:
                parse_paper_config(self.paper_config)
            except PaperConfigError as exc:
                raise ValidationError({"paper_config": str(exc)}) from exc


class OrderSide(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"


class OrderPurpose(models.TextChoices):
    ENTRY = "entry", "Entry"
    CLOSE = "close", "Close"
    EMERGENCY_CLOSE = "emergency_close", "Emergency close"


class OrderStatus(models.TextChoices):
    CREATED = "created", "Created (not sent)"
    SUBMITTING = "submitting", "Submitting"
    UNKNOWN = "unknown", "Unknown outcome"
    OPEN = "open", "Open"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    CANCELLING = "cancelling", "Cancelling"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"

    @classmethod
    def final(cls) -> list[str]:
        return [cls.FILLED, cls.CANCELLED, cls.REJECTED, cls.FAILED, cls.EXPIRED]

    @classmethod
    def active(cls) -> list[str]:
        return [s for s in cls.values if s not in cls.final()]


class Order(models.Model):
    """One order, identified by a client order id generated before the first attempt."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="orders")
    position = models.ForeignKey("lifecycle.Position", null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="orders")
    action = models.ForeignKey("execution.Action", null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="orders")
    strategy = models.ForeignKey(
        "lifecycle.Strategy", null=True, blank=True, on_delete=models.PROTECT,
        related_name="orders",
        help_text="Whose order: its config (retries, timeout, slippage) and, for an entry, "
                  "the strategy of the position the fill opens.")
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replacements",
        help_text="The timed-out emergency close order this market order replaces.")
    client_order_id = models.CharField(max_length=64, unique=True)
    exchange_order_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    order_type = models.CharField(max_length=8, choices=OrderType.choices,
                                  default=OrderType.MARKET)
    purpose = models.CharField(max_length=16, choices=OrderPurpose.choices,
                               default=OrderPurpose.ENTRY)
    reduce_only = models.BooleanField(default=False)
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**MONEY, null=True, blank=True, help_text="Limit price.")
    expected_price = models.DecimalField(**MONEY, null=True, blank=True,
                                         help_text="Reference price when the order was decided.")
    filled_quantity = models.DecimalField(**QTY, default=Decimal("0"))
    average_fill_price = models.DecimalField(**MONEY, null=True, blank=True)
    fee = models.DecimalField(**MONEY, default=Decimal("0"))
    fee_currency = models.CharField(max_length=16, blank=True, default="")
    status = models.CharField(max_length=20, choices=OrderStatus.choices,
                              default=OrderStatus.CREATED)
    slippage_percent = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True,
        help_text="Signed slippage of the fill against the expected price; adverse is positive.")
    estimated_slippage_percent = models.DecimalField(max_digits=12, decimal_places=6,
                                                     null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    timed_out = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(null=True, blank=True,
                                             help_text="From first send to acknowledgement.")
    last_error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(
        default=0, help_text="Bumped by every write that moves the order: each write is a "
                             "compare-and-set on the version it read.")
    lease_holder = models.CharField(max_length=128, blank=True, default="",
                                    help_text="The worker that may be sending this order.")
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="Until then the holder may be sending: nobody else "
                                         "moves the order.")
    in_doubt_since = models.DateTimeField(
        null=True, blank=True, help_text="The exchange has not answered definitively since "
                                         "then (a send with an unknown outcome, an order it "
                                         "stopped listing).")
    doubt_lookups = models.PositiveIntegerField(
        default=0, help_text="Targeted lookups that did not find the order since "
                             "in_doubt_since.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="order_status_created_idx"),
            models.Index(fields=["account", "status"], name="order_account_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0),
                                   name="order_filled_non_negative"),
            models.CheckConstraint(condition=Q(filled_quantity__lte=F("quantity")),
                                   name="order_filled_within_quantity"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="order_fee_non_negative"),
            models.CheckConstraint(condition=Q(status__in=OrderStatus.values),
                                   name="order_status_valid"),
            models.CheckConstraint(condition=Q(side__in=OrderSide.values), name="order_side_valid"),
            # price IS NOT NULL spelled out: a NULL price would make `price > 0` unknown,
            # which a CHECK lets through.
            models.CheckConstraint(condition=Q(order_type=OrderType.MARKET)
                                   | Q(price__isnull=False, price__gt=0),
                                   name="order_limit_has_price"),
        ]

    def __str__(self) -> str:
        return (f"{self.side} {plain(self.quantity)} {self.symbol} [{self.client_order_id}] "
                f"{self.status}")

    @property
    def is_final(self) -> bool:
        return self.status in OrderStatus.final()

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def in_doubt(self) -> bool:
        """Not final, and the exchange has not said definitively whether it has the order."""
        return self.in_doubt_since is not None and not self.is_final


class ActionKind(models.TextChoices):
    EMERGENCY_CLOSE = "emergency_close", "Emergency close"
    CLOSE = "close", "Close"
    CLOSE_ON_SHUTDOWN = "close_on_shutdown", "Close on shutdown"
    CANCEL_ORDER = "cancel_order", "Cancel order"

    @classmethod
    def closing(cls) -> list[str]:
        return [cls.EMERGENCY_CLOSE, cls.CLOSE, cls.CLOSE_ON_SHUTDOWN]


class ActionState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def open(cls) -> list[str]:
        return [cls.PENDING, cls.RUNNING]


class Action(models.Model):
    """A requested operation in the action queue, processed by a Celery task.

    The idempotency key and the partial unique constraint make a repeated
    request a no-op: one open close action per position, whoever asks.
    """

    kind = models.CharField(max_length=24, choices=ActionKind.choices)
    state = models.CharField(max_length=12, choices=ActionState.choices,
                             default=ActionState.PENDING)
    position = models.ForeignKey("lifecycle.Position", null=True, blank=True,
                                 on_delete=models.PROTECT, related_name="actions")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="cancel_actions",
                              help_text="The order to cancel (cancel actions).")
    reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True, default="")
    requested_by = models.CharField(max_length=150, default="system",
                                    help_text="User name or component that asked (timeout, risk…).")
    idempotency_key = models.CharField(max_length=128, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    lease_holder = models.CharField(max_length=128, blank=True, default="",
                                    help_text="The worker running the action.")
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A running action whose lease ran out is taken "
                                         "over (orderExecution.actionLeaseSeconds).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"], name="action_state_created_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["position"],
                condition=Q(kind__in=ActionKind.closing(), state__in=ActionState.open()),
                name="one_open_close_action_per_position",
            ),
            models.CheckConstraint(condition=Q(state__in=ActionState.values),
                                   name="action_state_valid"),
            models.CheckConstraint(
                condition=~Q(kind__in=ActionKind.closing()) | Q(position__isnull=False),
                name="close_action_has_position"),
            models.CheckConstraint(
                condition=~Q(kind=ActionKind.CANCEL_ORDER) | Q(order__isnull=False),
                name="cancel_action_has_order"),
        ]

    def __str__(self) -> str:
        target = f"position {self.position_id}" if self.position_id else f"order {self.order_id}"
        return f"{self.get_kind_display()} {target} [{self.state}]"


class AccountStream(models.Model):
    """The live link to one exchange account: who owns it, how it is doing, what it last read.

    Exactly one process owns an account's stream: the owner holds a lease
    (``owner``, ``lease_until``) that it renews; another process takes the account
    over once the lease ran out (its owner died). The status fields are what the
    admin, the API and the dashboard show; ``balances`` is the last balance read by
    the REST reconciliation.
    """

    class Mode(models.TextChoices):
        STREAM = "stream", "Websocket stream + REST reconciliation"
        REST = "rest", "REST only (no stream for this exchange or account)"

    account = models.OneToOneField(ExchangeAccount, on_delete=models.CASCADE, primary_key=True,
                                   related_name="stream")
    owner = models.CharField(max_length=128, blank=True, default="",
                             help_text="The process holding the stream (host:pid/thread).")
    lease_until = models.DateTimeField(null=True, blank=True,
                                       help_text="Taken over by another process after this.")
    owner_since = models.DateTimeField(null=True, blank=True)
    takeovers = models.PositiveIntegerField(default=0)
    mode = models.CharField(max_length=8, choices=Mode.choices, blank=True, default="")
    connected = models.BooleanField(default=False)
    connected_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    messages = models.PositiveBigIntegerField(default=0)
    reconnects = models.PositiveIntegerField(default=0)
    last_reconcile_at = models.DateTimeField(null=True, blank=True)
    last_reconcile = models.JSONField(default=dict, blank=True,
                                      help_text="What the last REST reconciliation found.")
    last_mark_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    balances = models.JSONField(default=dict, blank=True,
                                help_text="Currency → {free, used, total}, as last read.")
    balances_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account__name"]

    def __str__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"{self.account_id}: {state} ({self.owner or 'no owner'})"


class ClientRequestScope(models.TextChoices):
    """What a caller's idempotency key names."""

    ACTION = "action", "Action request"
    ORDER = "order", "Order placement"


class ClientRequest(models.Model):
    """A caller's idempotency key and the request it named, with the answer it got.

    Callers' keys live here, apart from the keys the server builds for its own
    actions (``Action.idempotency_key``: ``timeout:<id>:<n>``, ``close:<id>:<n>``…),
    so no client can take a key the platform needs. A key belongs to its caller:
    unique per (caller, scope, key), and one ``INSERT … ON CONFLICT DO NOTHING``
    decides which request it names (``execution.client_requests``).
    """

    caller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="+")
    scope = models.CharField(max_length=16, choices=ClientRequestScope.choices)
    key = models.CharField(max_length=128)
    request = models.JSONField(help_text="The request as first validated, to compare retries.")
    action = models.ForeignKey(Action, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["caller", "scope", "key"],
                                    name="one_request_per_client_key"),
            models.CheckConstraint(condition=Q(scope__in=ClientRequestScope.values),
                                   name="client_request_scope_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} key {self.key!r} of user {self.caller_id}"


class Candle(models.Model):
    """Recent OHLCV per symbol and timeframe: the input to the risk monitor."""

    exchange_id = models.CharField(max_length=64, default="paper")
    symbol = models.CharField(max_length=64)
    timeframe = models.CharField(max_length=8, default="5m")
    open_time = models.DateTimeField()
    open = models.DecimalField(**MONEY)
    high = models.DecimalField(**MONEY)
    low = models.DecimalField(**MONEY)
    close = models.DecimalField(**MONEY)
    volume = models.DecimalField(max_digits=32, decimal_places=10)

    class Meta:
        ordering = ["symbol", "timeframe", "-open_time"]
        constraints = [
            models.UniqueConstraint(fields=["exchange_id", "symbol", "timeframe", "open_time"],
                                    name="candle_unique_per_time"),
            models.CheckConstraint(condition=Q(volume__gte=0), name="candle_volume_non_negative"),
            models.CheckConstraint(condition=Q(high__gte=F("low")), name="candle_high_above_low"),
        ]
        indexes = [models.Index(fields=["symbol", "timeframe", "-open_time"],
                                name="candle_recent_idx")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.timeframe} {self.open_time:%Y-%m-%d %H:%M} c={self.close}"
