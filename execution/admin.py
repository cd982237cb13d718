from django.contrib import admin

from execution.models import Action, Candle, ExchangeAccount, Order
from tradingsite.admin_helpers import AppendOnlyAdmin


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

    def has_add_permission(self, request) -> bool:
        return False  # orders are placed through the pipeline, never typed in


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
