"""Strategies, positions, their audit trail and the trades they become."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tradingsite.domain import MONEY, QTY, CloseReason
from tradingsite.numbers import plain

TIMEFRAME_CHOICES = [(tf, tf) for tf in
                     ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")]


class Strategy(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    account = models.ForeignKey("execution.ExchangeAccount", on_delete=models.PROTECT,
                                related_name="strategies")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES, default="5m")
    live_trading = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of the live-trading config for this strategy (JSON, camelCase or "
                  'snake_case), e.g. {"lifecycle": {"maxHoldingTimeMinutes": 90}}.')
    enabled = models.BooleanField(default=True)
    supervises_account = models.BooleanField(
        default=False,
        help_text="Positions opened on this strategy's account outside the platform are "
                  "adopted onto this strategy (when the account's adoptExternalPositions is "
                  "on): its holding limits and health scoring apply. One per account.")
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "strategies"
        constraints = [
            models.UniqueConstraint(fields=["account"], condition=Q(supervises_account=True),
                                    name="one_supervision_strategy_per_account"),
        ]

    def __str__(self) -> str:
        return self.name

    def effective_config(self):  # -> LiveTradingConfig
        from tradingsite.live_config import strategy_config

        return strategy_config(self.live_trading)

    def clean(self) -> None:
        from tradingsite.live_config import LiveConfigError

        try:
            self.effective_config()
        except LiveConfigError as exc:
            raise ValidationError({"live_trading": [f"{k}: {m}" for k, m in exc.errors]}) from exc


class PositionSide(models.TextChoices):
    LONG = "long", "Long"
    SHORT = "short", "Short"


class PositionState(models.TextChoices):
    OPEN = "OPEN", "Open"
    WARNING = "WARNING", "Warning"
    CRITICAL = "CRITICAL", "Critical"
    CLOSING = "CLOSING", "Closing"
    CLOSED = "CLOSED", "Closed"

    @classmethod
    def active(cls) -> list[str]:
        """States of a position that is still held on the exchange."""
        return [cls.OPEN, cls.WARNING, cls.CRITICAL, cls.CLOSING]

    @classmethod
    def holding(cls) -> list[str]:
        """States the timeout check moves forward (not yet closing)."""
        return [cls.OPEN, cls.WARNING, cls.CRITICAL]


class DangerLevel(models.TextChoices):
    SAFE = "SAFE", "Safe"
    WARNING = "WARNING", "Warning"
    CRITICAL = "CRITICAL", "Critical"


class PositionSource(models.TextChoices):
    FILL = "fill", "Entry fill"
    API = "api", "Handed over by API"
    RECONCILE = "reconcile", "Imported by reconciliation"
    MANUAL = "manual", "Created by operator"
    BOT = "bot", "Handed over by a bot connection"


class Position(models.Model):
    """A position under supervision, from entry fill to close."""

    # Indexed through position_strategy_state_idx (strategy first): no separate FK index,
    # one index less to maintain on every state change.
    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="positions",
                                 db_index=False)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=5, choices=PositionSide.choices)
    quantity = models.DecimalField(**QTY, help_text="Quantity still held.")
    initial_quantity = models.DecimalField(**QTY)
    entry_price = models.DecimalField(**MONEY)
    entry_fee = models.DecimalField(**MONEY, default=Decimal("0"))
    opened_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=PositionState.choices,
                             default=PositionState.OPEN)
    state_changed_at = models.DateTimeField(default=timezone.now)
    warning_at = models.DateTimeField(null=True, blank=True)
    critical_at = models.DateTimeField(null=True, blank=True)
    closing_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(
        max_length=16, choices=CloseReason.choices, blank=True, default="",
        help_text="Which signal asked for the close (timeout, risk, manual, shutdown, signal).")
    close_requested_by = models.CharField(max_length=150, blank=True, default="")
    peak_price = models.DecimalField(**MONEY, help_text="Highest price since open.")
    trough_price = models.DecimalField(**MONEY, help_text="Lowest price since open.")
    last_price = models.DecimalField(**MONEY, null=True, blank=True)
    last_price_at = models.DateTimeField(null=True, blank=True)
    health_score = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    danger_level = models.CharField(max_length=8, choices=DangerLevel.choices, blank=True,
                                    default="")
    health_checked_at = models.DateTimeField(null=True, blank=True)
    closed_quantity = models.DecimalField(**QTY, default=Decimal("0"),
                                          help_text="Quantity closed so far by exit fills.")
    exit_value = models.DecimalField(**MONEY, default=Decimal("0"),
                                     help_text="Sum of quantity × price of the exit fills.")
    exit_fees = models.DecimalField(**MONEY, default=Decimal("0"))
    attention = models.CharField(
        max_length=255, blank=True, default="",
        help_text="Why the position needs reconciling before anything else is sent for it "
                  "(an exit fill that could not be applied); empty when it does not.")
    source = models.CharField(max_length=10, choices=PositionSource.choices,
                              default=PositionSource.FILL)
    external_ref = models.CharField(max_length=128, blank=True, default="",
                                    help_text="The bot's or exchange's own reference.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [
            models.Index(fields=["state", "opened_at"], name="position_state_opened_idx"),
            models.Index(fields=["strategy", "state"], name="position_strategy_state_idx"),
            models.Index(fields=["symbol", "state"], name="position_symbol_state_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=0),
                                   name="position_quantity_non_negative"),
            models.CheckConstraint(condition=Q(initial_quantity__gt=0),
                                   name="position_initial_quantity_positive"),
            models.CheckConstraint(condition=Q(entry_price__gt=0),
                                   name="position_entry_price_positive"),
            models.CheckConstraint(condition=Q(entry_fee__gte=0),
                                   name="position_entry_fee_non_negative"),
            models.CheckConstraint(condition=Q(state__in=PositionState.values),
                                   name="position_state_valid"),
            models.CheckConstraint(condition=Q(side__in=PositionSide.values),
                                   name="position_side_valid"),
            models.CheckConstraint(condition=Q(danger_level__in=[*DangerLevel.values, ""]),
                                   name="position_danger_level_valid"),
            models.CheckConstraint(
                condition=Q(health_score__isnull=True)
                | Q(health_score__gte=0, health_score__lte=100),
                name="position_health_score_range"),
            models.CheckConstraint(condition=~Q(state=PositionState.CLOSED)
                                   | Q(closed_at__isnull=False),
                                   name="position_closed_has_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {plain(self.quantity)} {self.symbol} [{self.state}]"

    @property
    def is_active(self) -> bool:
        return self.state in PositionState.active()

    def holding_seconds(self, now=None) -> float:
        end = self.closed_at or now or timezone.now()
        return (end - self.opened_at).total_seconds()

    def unrealised_pnl(self, price: Decimal | None = None) -> Decimal | None:
        """Gross PnL at ``price`` (default: the last known price), before exit fees."""
        mark = price if price is not None else self.last_price
        if mark is None:
            return None
        direction = 1 if self.side == PositionSide.LONG else -1
        return (mark - self.entry_price) * self.quantity * direction


class PositionFill(models.Model):
    """A fill applied to a position, once: ``fill_key`` makes a redelivered fill a no-op."""

    class Kind(models.TextChoices):
        ENTRY = "entry", "Entry"
        EXIT = "exit", "Exit"

    position = models.ForeignKey(Position, on_delete=models.CASCADE, related_name="fills")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    fill_key = models.CharField(max_length=160, unique=True,
                                help_text="Unique per fill, e.g. '<client order id>:<cumulative qty>'.")
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY, default=Decimal("0"))
    filled_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["filled_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="fill_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="fill_price_positive"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="fill_fee_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {plain(self.quantity)} @ {plain(self.price)} ({self.fill_key})"


class PositionEvent(models.Model):
    """Append-only audit: every transition of a position, and why."""

    # Indexed through event_position_time_idx (position first).
    position = models.ForeignKey(Position, on_delete=models.CASCADE, related_name="events",
                                 db_index=False)
    kind = models.CharField(max_length=32, default="transition")
    from_state = models.CharField(max_length=8, choices=PositionState.choices, blank=True,
                                  default="")
    to_state = models.CharField(max_length=8, choices=PositionState.choices, blank=True,
                                default="")
    reason = models.CharField(max_length=255, blank=True, default="")
    actor = models.CharField(max_length=150, default="system")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["position", "created_at"], name="event_position_time_idx")]

    def __str__(self) -> str:
        return f"{self.position_id}: {self.from_state or '-'} → {self.to_state or '-'} ({self.reason})"


class Trade(models.Model):
    """The closed result of a position (or an imported historical trade)."""

    position = models.OneToOneField(Position, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="trade")
    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="trades")
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=5, choices=PositionSide.choices)
    quantity = models.DecimalField(**QTY)
    entry_price = models.DecimalField(**MONEY)
    exit_price = models.DecimalField(**MONEY)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField()
    fees = models.DecimalField(**MONEY, default=Decimal("0"))
    pnl = models.DecimalField(**MONEY, help_text="Realised PnL, fees deducted.")
    pnl_percent = models.DecimalField(max_digits=14, decimal_places=6,
                                      help_text="Realised PnL as % of the entry notional.")
    holding_seconds = models.PositiveIntegerField()
    exit_reason = models.CharField(max_length=16, choices=CloseReason.choices)
    external_ref = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-closed_at"]
        indexes = [
            models.Index(fields=["closed_at"], name="trade_closed_idx"),
            models.Index(fields=["strategy", "closed_at"], name="trade_strategy_closed_idx"),
            models.Index(fields=["symbol", "closed_at"], name="trade_symbol_closed_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=Q(entry_price__gt=0),
                                   name="trade_entry_price_positive"),
            models.CheckConstraint(condition=Q(exit_price__gt=0),
                                   name="trade_exit_price_positive"),
            models.CheckConstraint(condition=Q(fees__gte=0), name="trade_fees_non_negative"),
            models.CheckConstraint(condition=Q(closed_at__gte=models.F("opened_at")),
                                   name="trade_closed_after_opened"),
            models.CheckConstraint(condition=Q(exit_reason__in=CloseReason.values),
                                   name="trade_exit_reason_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.side} pnl={plain(self.pnl)} ({self.exit_reason})"
