from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from execution.accounts import base_url_change_needs_confirmation, exchange_account_save
from execution.models import (
    CREDENTIAL_ENV_PREFIX,
    CREDENTIAL_FIELDS,
    AccountStream,
    Action,
    Candle,
    ExchangeAccount,
    Order,
    validate_base_url,
)
from execution.services import order_request_cancel
from tradingsite.admin_display import PLAIN_DECIMALS
from tradingsite.admin_helpers import AppendOnlyAdmin, confirmation_page
from tradingsite.errors import DomainError
from tradingsite.numbers import percent, plain


class ExchangeAccountForm(forms.ModelForm):
    """The account form; moving an account's credentials to another base URL needs a tick."""

    api_base_url = forms.URLField(
        required=False, assume_scheme="https",  # a base URL typed without scheme is https
        validators=[validate_base_url], help_text=ExchangeAccount._meta.get_field(
            "api_base_url").help_text)
    confirm_base_url_change = forms.BooleanField(
        required=False, label="Confirm the new API base URL",
        help_text="Required when the API base URL of an account with credentials changes: "
                  "its keys are sent to that host with every request.")

    class Meta:
        model = ExchangeAccount
        exclude: list[str] = []  # every editable field; the admin's fieldsets lay them out

    def clean(self) -> dict:
        cleaned = super().clean()
        stored = self.instance if self.instance.pk else None  # not yet updated from the form
        after = ExchangeAccount(api_base_url=cleaned.get("api_base_url") or "",
                                **{name: cleaned.get(name) or "" for name in CREDENTIAL_FIELDS})
        if (not self.errors and base_url_change_needs_confirmation(stored, after)
                and not cleaned.get("confirm_base_url_change")):
            self.add_error("confirm_base_url_change", (
                f"The API base URL changes from {stored.api_base_url or '(the exchange default)'}"
                f" to {after.api_base_url or '(the exchange default)'}: the credentials "
                f"({after.credentials_status()}) will be sent there. Tick to confirm."))
        return cleaned


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    form = ExchangeAccountForm
    formfield_overrides = PLAIN_DECIMALS
    list_display = ("name", "exchange_id", "testnet", "enabled", "quote_currency",
                    "starting_capital", "credentials", "stream_status")
    list_filter = ("exchange_id", "testnet", "enabled")
    search_fields = ("name", "exchange_id")
    readonly_fields = ("created_at", "credentials", "stream_status", "effective_sync")
    fieldsets = (
        (None, {"fields": ("name", "exchange_id", "testnet", "enabled", "market_type",
                           "quote_currency", "starting_capital", "order_queue")}),
        (f"Credentials (names of environment variables starting with {CREDENTIAL_ENV_PREFIX})",
         {"fields": ("api_key_env", "api_secret_env", "api_password_env", "credentials",
                     "api_base_url", "confirm_base_url_change")}),
        ("Live account truth (stream, marks, reconciliation)",
         {"fields": ("live_trading", "effective_sync", "stream_status")}),
        ("Paper exchange", {"fields": ("paper_config",), "classes": ("collapse",)}),
        ("Audit", {"fields": ("created_at",)}),
    )

    @admin.display(description="Credentials")
    def credentials(self, obj: ExchangeAccount) -> str:
        return obj.credentials_status()

    @admin.display(description="Stream")
    def stream_status(self, obj: ExchangeAccount) -> str:
        return stream_summary(getattr(obj, "stream", None))

    @admin.display(description="Effective accountSync")
    def effective_sync(self, obj: ExchangeAccount) -> str:
        sync = obj.sync_settings()
        return (f"streams {'on' if sync.streams else 'off'}, reconcile every "
                f"{sync.reconcile_interval_seconds:g} s, marks every "
                f"{sync.mark_refresh_seconds:g} s, adopt external positions "
                f"{'on' if sync.adopt_external_positions else 'off'}")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("stream")

    def save_model(self, request: HttpRequest, obj: ExchangeAccount, form, change: bool) -> None:
        """Through the service: validated again, confirmed, and written to the audit log."""
        exchange_account_save(account=obj, actor=request.user.get_username(),
                              base_url_confirmed=form.cleaned_data.get("confirm_base_url_change",
                                                                       False))


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("client_order_id", "symbol", "what", "filled", "average_price", "status",
                    "slippage", "attempts", "account", "created_at")
    list_filter = ("status", "purpose", "side", "order_type", "timed_out", "account")
    search_fields = ("client_order_id", "exchange_order_id", "symbol", "last_error")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields]
    actions = ["cancel_orders"]

    def has_add_permission(self, request) -> bool:
        return False  # orders are placed through the pipeline, never typed in

    # A few combined columns: the list fits 1440 px.
    @admin.display(description="Order", ordering="purpose")
    def what(self, obj: Order) -> str:
        return f"{obj.side} {obj.order_type} · {obj.get_purpose_display().lower()}"

    @admin.display(description="Filled / qty", ordering="filled_quantity")
    def filled(self, obj: Order) -> str:
        return f"{plain(obj.filled_quantity)} / {plain(obj.quantity)}"

    @admin.display(description="Avg price", ordering="average_fill_price")
    def average_price(self, obj: Order) -> str:
        return "—" if obj.average_fill_price is None else plain(obj.average_fill_price)

    @admin.display(description="Slippage", ordering="slippage_percent")
    def slippage(self, obj: Order) -> str:
        return percent(obj.slippage_percent, 3)

    def has_cancel_orders_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and self.has_change_permission(request)

    @admin.action(description="Cancel selected orders", permissions=["cancel_orders"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]):
        """Ask for confirmation, then queue a cancel action per active order (nothing is sent
        in the request: the action queue cancels and reads each back on its account's queue)."""
        if request.POST.get("confirm") != "yes":
            return confirmation_page(self, request, "admin/execution/order/cancel_orders.html",
                                     title="Cancel orders: are you sure?",
                                     action_name="cancel_orders",
                                     selected=queryset.select_related("account"))
        actor = request.user.get_username()
        for order in queryset.select_related("account", "strategy", "position", "action"):
            if order.is_final:
                self.message_user(request, f"{order.client_order_id} is already "
                                  f"{order.get_status_display().lower()}: skipped.",
                                  messages.WARNING)
                continue
            try:
                action, created = order_request_cancel(order, actor=actor)
            except DomainError as exc:
                self.message_user(request, f"{order.client_order_id}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{order.client_order_id}: cancel "
                              f"{'queued' if created else 'already queued'} (action "
                              f"#{action.pk}).", messages.SUCCESS)
        return None


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "state", "position", "order", "reason", "requested_by",
                    "attempts", "created_at", "finished_at")
    list_filter = ("kind", "state", "reason")
    search_fields = ("idempotency_key", "requested_by", "error", "position__symbol")
    list_select_related = ("position", "order")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Action._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # requested through services (admin actions on positions/orders)


@admin.register(Candle)
class CandleAdmin(AppendOnlyAdmin):
    list_display = ("symbol", "timeframe", "open_time", "open", "high", "low", "close", "volume",
                    "exchange_id")
    list_filter = ("timeframe", "exchange_id", "symbol")
    search_fields = ("symbol",)
    date_hierarchy = "open_time"


def _age(moment, now) -> str:
    return "never" if moment is None else f"{max((now - moment).total_seconds(), 0):.0f} s ago"


def stream_summary(stream: AccountStream | None) -> str:
    """One line an operator reads: mode, owner, connection, ages, reconnects, last error."""
    from django.utils import timezone

    if stream is None:
        return "no owner yet (starts with a worker or runplatform)"
    now = timezone.now()
    alive = bool(stream.owner) and stream.lease_until is not None and stream.lease_until >= now
    owner = stream.owner if alive else ("none (lease ran out: taken over shortly)"
                                        if stream.owner else "none")
    parts = [f"{stream.mode or 'starting'}", f"owner {owner}",
             "connected" if stream.connected else "not connected",
             f"last message {_age(stream.last_message_at, now)}",
             f"last reconcile {_age(stream.last_reconcile_at, now)}",
             f"reconnects {stream.reconnects}"]
    if stream.last_error:
        parts.append(f"last error: {stream.last_error[:200]}")
    return "; ".join(parts)


@admin.register(AccountStream)
class AccountStreamAdmin(admin.ModelAdmin):
    """Read-only: written by the stream owners."""

    list_display = ("account", "mode", "owner", "connected", "last_message_at", "reconnects",
                    "last_reconcile_at", "last_mark_at", "takeovers", "balances_at")
    list_filter = ("mode", "connected")
    readonly_fields = [f.name for f in AccountStream._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
