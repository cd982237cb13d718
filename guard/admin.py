"""The guard in the admin: scopes (state changes and account limits through the services),
the trip history and the refused orders (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from guard.limits import account_portfolio_validate
from guard.models import GuardTrip, OrderRefusal, ScopeKind, TradingScope, TradingState
from guard.services import scope_portfolio_set, scope_state_set
from tradingsite.admin_helpers import AppendOnlyAdmin, format_age
from tradingsite.errors import DomainError
from tradingsite.live_config import LiveConfigError


class TradingScopeForm(forms.ModelForm):
    """A state change needs a reason; an account's limits go through the one validator."""

    new_state = forms.ChoiceField(
        choices=[("", "— keep the current state —"), *TradingState.choices], required=False,
        help_text="ACTIVE or REDUCING re-arms a tripped scope (its baselines restart from the "
                  "equity now); HALTED keeps the trip.")
    reason = forms.CharField(max_length=255, required=False,
                             help_text="Why: shown to every operator and audited.")

    class Meta:
        model = TradingScope
        fields = ["portfolio"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("new_state") and not (data.get("reason") or "").strip():
            self.add_error("reason", "A state change needs a reason.")
        if "portfolio" in self.changed_data:
            overrides = data.get("portfolio")
            if self.instance.kind != ScopeKind.ACCOUNT:
                if overrides:
                    self.add_error("portfolio", "Only an account scope takes overrides here: a "
                                                "strategy's go in its live_trading, the "
                                                "platform's in the site config.")
            else:
                try:
                    account_portfolio_validate(overrides or {}, source=self.instance.label)
                except LiveConfigError as exc:
                    self.add_error("portfolio", [f"{key}: {message}"
                                                 for key, message in exc.errors])
        return data


@admin.register(TradingScope)
class TradingScopeAdmin(admin.ModelAdmin):
    form = TradingScopeForm
    list_display = ("label", "state", "state_reason", "state_by", "state_since", "trip_code",
                    "equity", "equity_age")
    list_filter = ("kind", "state", "trip_code")
    search_fields = ("account__name", "strategy__name", "state_reason")
    readonly_fields = ("label", "state", "state_reason", "state_by", "state_since", "trip_code",
                       "equity", "equity_at", "marks_as_of", "unmarked_positions", "day",
                       "day_start_equity", "peak_equity", "peak_at")
    fieldsets = (
        (None, {"fields": ("label", "state", "state_reason", "state_by", "state_since",
                           "trip_code")}),
        ("Change the state", {"fields": ("new_state", "reason")}),
        ("Account limits (liveTrading.portfolio overrides)", {"fields": ("portfolio",)}),
        ("Live equity", {"fields": ("equity", "equity_at", "marks_as_of", "unmarked_positions",
                                    "day", "day_start_equity", "peak_equity", "peak_at")}),
    )

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("account", "strategy")

    @admin.display(description="Equity age")
    def equity_age(self, obj: TradingScope) -> str:
        return format_age(obj.equity_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the guard makes one per account and strategy

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: TradingScope, form: TradingScopeForm,
                   change: bool) -> None:
        """Through the services only: audited, mirrored, the ledger counted again."""
        actor = request.user.get_username()
        reason = form.cleaned_data.get("reason", "")
        try:
            if "portfolio" in form.changed_data:
                scope_portfolio_set(scope=obj, overrides=form.cleaned_data["portfolio"] or {},
                                    actor=actor, reason=reason or "limits edited in the admin")
            if form.cleaned_data.get("new_state"):
                scope_state_set(scope=obj, state=form.cleaned_data["new_state"], reason=reason,
                                actor=actor)
        except DomainError as exc:
            self.message_user(request, str(exc), messages.ERROR)


@admin.register(GuardTrip)
class GuardTripAdmin(AppendOnlyAdmin):
    list_display = ("tripped_at", "scope", "code", "state_after", "message", "rearmed_at",
                    "rearmed_by", "rearm_reason")
    list_filter = ("code", "state_after")
    date_hierarchy = "tripped_at"

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("scope__account", "scope__strategy")


@admin.register(OrderRefusal)
class OrderRefusalAdmin(AppendOnlyAdmin):
    list_display = ("created_at", "reason_code", "scope", "symbol", "side", "quantity",
                    "requested_by", "message")
    list_filter = ("reason_code",)
    search_fields = ("scope", "symbol", "message", "requested_by")
    date_hierarchy = "created_at"
