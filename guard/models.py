"""Trading states per scope, the gate's ledger, trips and the orders the gate refused."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tradingsite.domain import MONEY, QTY


class ScopeKind(models.TextChoices):
    GLOBAL = "global", "Platform"
    ACCOUNT = "account", "Account"
    STRATEGY = "strategy", "Strategy"


# Locks are taken in this order (then by id) by everyone: no two transactions wait on each other.
SCOPE_LEVEL = {ScopeKind.GLOBAL: 0, ScopeKind.ACCOUNT: 1, ScopeKind.STRATEGY: 2}


class TradingState(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    REDUCING = "REDUCING", "Reducing only"
    HALTED = "HALTED", "Halted"

    @classmethod
    def strictness(cls, state: str) -> int:
        """ACTIVE 0 < REDUCING 1 < HALTED 2: the strictest state of an order's scopes applies."""
        return {cls.ACTIVE: 0, cls.REDUCING: 1, cls.HALTED: 2}[state]


class ReasonCode(models.TextChoices):
    """Why the gate refused an order (the API's 409 carries it as ``reason_code``)."""

    TRADING_HALTED = "TRADING_HALTED", "Trading halted"
    REDUCING_ONLY = "REDUCING_ONLY", "Only orders that reduce a position"
    MAX_NOTIONAL_PER_ORDER = "MAX_NOTIONAL_PER_ORDER", "Order notional above the limit"
    MAX_OPEN_POSITIONS = "MAX_OPEN_POSITIONS", "Open positions at the limit"
    MAX_EXPOSURE_SYMBOL = "MAX_EXPOSURE_SYMBOL", "Symbol exposure above the limit"
    MAX_EXPOSURE_ACCOUNT = "MAX_EXPOSURE_ACCOUNT", "Account exposure above the limit"
    ORDER_RATE = "ORDER_RATE", "Too many orders per minute"
    DAILY_LOSS = "DAILY_LOSS", "Daily loss limit tripped"
    DRAWDOWN = "DRAWDOWN", "Drawdown limit tripped"


class TripCode(models.TextChoices):
    DAILY_LOSS = "DAILY_LOSS", "Daily loss"
    DRAWDOWN = "DRAWDOWN", "Drawdown from the peak"


class TradingScope(models.Model):
    """One scope — the platform, an account or a strategy — with its trading state.

    ``state`` is changed only by ``guard.services`` (an operator with a reason, or a
    trip), each change audited. Global and account scopes also carry the live equity
    the evaluation computed and the baselines of their trips: the day's starting
    equity (the day in ``TIME_ZONE``) and the peak since the scope was armed.
    """

    kind = models.CharField(max_length=8, choices=ScopeKind.choices)
    level = models.PositiveSmallIntegerField(
        editable=False, help_text="0 platform, 1 account, 2 strategy: the order locks are taken in.")
    account = models.ForeignKey("execution.ExchangeAccount", null=True, blank=True,
                                on_delete=models.CASCADE, related_name="+")
    strategy = models.ForeignKey("lifecycle.Strategy", null=True, blank=True,
                                 on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=8, choices=TradingState.choices,
                             default=TradingState.ACTIVE)
    state_reason = models.CharField(max_length=255, blank=True, default="")
    state_by = models.CharField(max_length=150, blank=True, default="")
    state_since = models.DateTimeField(default=timezone.now)
    trip_code = models.CharField(
        max_length=16, choices=TripCode.choices, blank=True, default="",
        help_text="The open trip, until an operator re-arms the scope.")
    portfolio = models.JSONField(
        default=dict, blank=True,
        help_text="Account scopes: overrides of liveTrading.portfolio for this account "
                  '(camelCase or snake_case), e.g. {"maxOpenPositions": 5}.')
    equity = models.DecimalField(**MONEY, null=True, blank=True,
                                 help_text="Live equity: balance + unrealised PnL at the marks.")
    equity_at = models.DateTimeField(null=True, blank=True)
    marks_as_of = models.DateTimeField(
        null=True, blank=True, help_text="The oldest mark price the equity rests on.")
    unmarked_positions = models.PositiveIntegerField(
        default=0, help_text="Positions without any mark, valued at their entry price.")
    day = models.DateField(null=True, blank=True, help_text="The trading day (TIME_ZONE).")
    day_start_equity = models.DecimalField(**MONEY, null=True, blank=True)
    peak_equity = models.DecimalField(**MONEY, null=True, blank=True)
    peak_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["level", "id"]
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=Q(kind=ScopeKind.GLOBAL),
                                    name="guard_one_global_scope"),
            models.UniqueConstraint(fields=["account"], condition=Q(kind=ScopeKind.ACCOUNT),
                                    name="guard_one_scope_per_account"),
            models.UniqueConstraint(fields=["strategy"], condition=Q(kind=ScopeKind.STRATEGY),
                                    name="guard_one_scope_per_strategy"),
            models.CheckConstraint(
                condition=Q(kind=ScopeKind.GLOBAL, level=0, account__isnull=True,
                            strategy__isnull=True)
                | Q(kind=ScopeKind.ACCOUNT, level=1, account__isnull=False,
                    strategy__isnull=True)
                | Q(kind=ScopeKind.STRATEGY, level=2, account__isnull=True,
                    strategy__isnull=False),
                name="guard_scope_names_its_target"),
            models.CheckConstraint(condition=Q(state__in=TradingState.values),
                                   name="guard_scope_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.label} {self.state}"

    @property
    def name(self) -> str:
        """The account's or strategy's name ('' for the platform); the gate reads it with
        the row (``scope_target``), elsewhere it comes through the foreign key."""
        loaded = getattr(self, "scope_target", None)
        if loaded is not None:
            return loaded
        if self.kind == ScopeKind.ACCOUNT:
            return self.account.name
        if self.kind == ScopeKind.STRATEGY:
            return self.strategy.name
        return ""

    @property
    def label(self) -> str:
        """``global``, ``account:NAME`` or ``strategy:NAME`` (as ``trading_state --scope``)."""
        return "global" if self.kind == ScopeKind.GLOBAL else f"{self.kind}:{self.name}"


class ScopeLedger(models.Model):
    """What the gate counts against a scope's limits, apart from the state row.

    Orders share-lock the state rows of their scopes; an order that meets a counted
    limit (open positions, exposure, rate) locks this row for update, so decisions
    on one scope are taken one at a time while other scopes go on. The figures are
    exact at ``exact_at`` (the evaluation, or the gate on a limit's edge, recounts
    them under this lock) plus what the gate let through since, so they never count
    less than there is for the orders it decided.
    """

    scope = models.OneToOneField(TradingScope, primary_key=True, on_delete=models.CASCADE,
                                 related_name="ledger")
    tracked = models.BooleanField(
        default=False, help_text="The gate keeps the figures current (a counted limit is set); "
                                 "when False the next counted decision recounts first.")
    open_positions = models.PositiveIntegerField(
        default=0, help_text="Positions held plus entry orders on their way.")
    exposure = models.DecimalField(**MONEY, default=0,
                                   help_text="Gross notional of the positions and pending entries.")
    symbol_exposure = models.JSONField(default=dict, blank=True,
                                       help_text="The same per symbol (decimal strings).")
    recent_entries = models.JSONField(
        default=list, blank=True, help_text="When the last entries were let through (epoch s, "
                                            "the last 60 s).")
    exact_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ledger of scope {self.scope_id}: {self.open_positions} open"


class GuardTrip(models.Model):
    """A scope tripped by its daily loss or drawdown limit; open until an operator re-arms it."""

    scope = models.ForeignKey(TradingScope, on_delete=models.CASCADE, related_name="trips")
    code = models.CharField(max_length=16, choices=TripCode.choices)
    tripped_at = models.DateTimeField(default=timezone.now)
    message = models.TextField()
    numbers = models.JSONField(default=dict, help_text="Equity, baseline, loss and the limit.")
    state_before = models.CharField(max_length=8, choices=TradingState.choices)
    state_after = models.CharField(max_length=8, choices=TradingState.choices)
    close_all = models.BooleanField(default=False, help_text="closeAllOnTrip was on.")
    closes_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Every position of the scope had its close queued.")
    closes_requested = models.PositiveIntegerField(default=0)
    rearmed_at = models.DateTimeField(null=True, blank=True)
    rearmed_by = models.CharField(max_length=150, blank=True, default="")
    rearm_reason = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-tripped_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["scope"], condition=Q(rearmed_at__isnull=True),
                                    name="guard_one_open_trip_per_scope"),
            models.CheckConstraint(condition=Q(code__in=TripCode.values),
                                   name="guard_trip_code_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.code} trip of scope {self.scope_id} @ {self.tripped_at:%Y-%m-%d %H:%M:%S}"


class OrderRefusal(models.Model):
    """An order the gate refused, with its reason code and the numbers behind it."""

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    reason_code = models.CharField(max_length=32, choices=ReasonCode.choices)
    scope = models.CharField(max_length=100, help_text="The scope whose state or limit refused.")
    message = models.TextField()
    numbers = models.JSONField(default=dict)
    account = models.ForeignKey("execution.ExchangeAccount", null=True, on_delete=models.SET_NULL,
                                related_name="+")
    strategy = models.ForeignKey("lifecycle.Strategy", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    position = models.ForeignKey("lifecycle.Position", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    purpose = models.CharField(max_length=16)
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**MONEY, null=True, blank=True,
                                help_text="The price the order was valued at.")
    requested_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_at"], name="guard_refusal_created_idx"),
                   models.Index(fields=["reason_code", "created_at"],
                                name="guard_refusal_code_idx")]

    def __str__(self) -> str:
        return f"{self.reason_code}: {self.side} {self.quantity} {self.symbol} ({self.scope})"
