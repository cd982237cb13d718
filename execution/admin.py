from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from execution.models import Action, Candle, ExchangeAccount, Order
from execution.services import order_request_cancel
from tradingsite.admin_helpers import AppendOnlyAdmin, confirmation_page
from tradingsite.errors import DomainError


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "exchange_id", "testnet", "enabled", "quote_currency",
                    "starting_capital", "credentials")
    list_filter = ("exchange_id", "testnet", "enabled")
    search_fields = ("name", "exchange_id")
    readonly_fields = ("created_at", "credentials")
    fieldsets = (
        (None, {"fields": ("name", "exchange_id", "testnet", "enabled", "market_type",
                           "quote_currency", "starting_capital", "order_queue")}),
        ("Credentials (environment variable names only)",
         {"fields": ("api_key_env", "api_secret_env", "api_password_env", "credentials",
                     "api_base_url")}),
        ("Paper exchange", {"fields": ("paper_config",), "classes": ("collapse",)}),
        ("Audit", {"fields": ("created_at",)}),
    )

    @admin.display(description="Credentials")
    def credentials(self, obj: ExchangeAccount) -> str:
        return obj.credentials_status()

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "api_base_url":
            kwargs["assume_scheme"] = "https"  # a base URL typed without scheme is https
        return super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("client_order_id", "symbol", "side", "order_type", "purpose", "quantity",
                    "filled_quantity", "average_fill_price", "status", "slippage_percent",
                    "attempts", "account", "created_at")
    list_filter = ("status", "purpose", "side", "order_type", "timed_out", "account")
    search_fields = ("client_order_id", "exchange_order_id", "symbol", "last_error")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields]
    actions = ["cancel_orders"]

    def has_add_permission(self, request) -> bool:
        return False  # orders are placed through the pipeline, never typed in

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
