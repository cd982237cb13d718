from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from execution.models import Order
from lifecycle.danger import position_danger_level
from lifecycle.models import Position, PositionEvent, PositionState, Strategy, Trade
from lifecycle.selectors import position_timing, with_deadlines
from lifecycle.services import position_request_close
from tradingsite.admin_helpers import AppendOnlyAdmin, ReadOnlyInline, confirmation_page, format_age
from tradingsite.audit import audit_record, changed_fields
from tradingsite.domain import CloseReason
from tradingsite.errors import InvalidStateTransition
from tradingsite.numbers import money, percent, plain


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "timeframe", "enabled", "supervises_account",
                    "max_holding", "created_at")
    list_filter = ("enabled", "timeframe", "account", "supervises_account")
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "effective_config_json")

    @admin.display(description="Max holding")
    def max_holding(self, obj: Strategy) -> str:
        try:
            lc = obj.effective_config().lifecycle
        except ValueError as exc:
            return f"invalid config: {exc}"
        return f"{lc.warning_threshold_minutes}/{lc.max_holding_time_minutes} min"

    @admin.display(description="Effective live-trading config")
    def effective_config_json(self, obj: Strategy) -> str:
        import json

        try:
            text = json.dumps(obj.effective_config().to_json_dict(), indent=2)
        except ValueError as exc:
            text = f"invalid: {exc}"
        return format_html("<pre>{}</pre>", text)

    def save_model(self, request: HttpRequest, obj: Strategy, form: Any, change: bool) -> None:
        """Saved, and the change of its settings (its live-trading overrides above all)
        written to the audit log in the same transaction."""
        fields = ("account_id", "timeframe", "live_trading", "enabled")
        before = (Strategy.objects.filter(pk=obj.pk).values(*fields).first() if change else None)
        super().save_model(request, obj, form, change)
        old, new = changed_fields(before or {}, {name: getattr(obj, name) for name in fields},
                                  fields)
        if new or not change:
            audit_record(actor=request.user.get_username(),
                         action="strategy.update" if change else "strategy.create", target=obj,
                         before=old, after=new)


class PositionEventInline(ReadOnlyInline):
    model = PositionEvent
    fields = ("created_at", "kind", "from_state", "to_state", "reason", "actor")
    readonly_fields = fields
    show_change_link = False


class PositionOrderInline(ReadOnlyInline):
    model = Order
    fk_name = "position"
    fields = ("client_order_id", "purpose", "side", "quantity", "filled_quantity",
              "average_fill_price", "status", "slippage_percent", "attempts", "last_error")
    readonly_fields = fields


@admin.register(Position)
class PositionAdmin(admin.ModelAdmin):
    list_display = ("id", "position", "quantity", "entry_price", "state", "age", "timeout_in",
                    "unrealised_pnl", "health", "strategy")
    list_filter = ("state", "danger_level", "side", "strategy", "source", "close_reason")
    search_fields = ("symbol", "external_ref", "strategy__name")
    list_select_related = ("strategy__account",)
    date_hierarchy = "opened_at"
    inlines = [PositionEventInline, PositionOrderInline]
    readonly_fields = ("state", "state_changed_at", "warning_at", "critical_at", "closing_at",
                       "closed_at", "close_reason", "close_requested_by", "peak_price",
                       "trough_price", "last_price", "last_price_at", "health_score",
                       "danger_level", "health_checked_at", "created_at", "updated_at")
    actions = ["emergency_close"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Position]:
        return with_deadlines(super().get_queryset(request))

    @admin.display(description="Position", ordering="symbol")
    def position(self, obj: Position) -> str:
        return f"{obj.symbol} {obj.side}"

    @admin.display(description="Age", ordering="opened_at")
    def age(self, obj: Position) -> str:
        return format_age(obj.opened_at, obj.closed_at)

    @admin.display(description="Timeout in", ordering="timeout_due_at")
    def timeout_in(self, obj: Position) -> str:
        minutes = position_timing(obj).minutes_to_timeout
        if minutes is None or obj.state == PositionState.CLOSING:
            return "—"
        return f"{minutes:.0f} min" if minutes >= 0 else f"{-minutes:.0f} min late"

    def has_emergency_close_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and self.has_change_permission(request)

    @admin.action(description="Emergency close selected positions",
                  permissions=["emergency_close"])
    def emergency_close(self, request: HttpRequest, queryset: QuerySet[Position]):
        """Ask for confirmation, then queue one close per position (exit reason: manual)."""
        if request.POST.get("confirm") != "yes":
            return confirmation_page(self, request,
                                     "admin/lifecycle/position/emergency_close.html",
                                     title="Emergency close: are you sure?",
                                     action_name="emergency_close",
                                     selected=queryset.select_related("strategy"))
        actor, note = request.user.get_username(), request.POST.get("note", "")[:200]
        for position in queryset:
            try:
                action, created = position_request_close(
                    position=position, reason=CloseReason.MANUAL, actor=actor, note=note)
            except InvalidStateTransition:
                self.message_user(request, f"Position #{position.pk} ({position.symbol}) is "
                                  "already closed: nothing to close.", messages.ERROR)
                continue
            if created:
                self.message_user(request, f"Position #{position.pk} ({position.symbol}): "
                                  f"emergency close queued (action #{action.pk}).",
                                  messages.SUCCESS)
            else:
                self.message_user(request, f"Position #{position.pk} ({position.symbol}): a "
                                  f"close is already queued (action #{action.pk}, "
                                  f"{action.state}).", messages.WARNING)
        return None

    @admin.display(description="Unrealised PnL")
    def unrealised_pnl(self, obj: Position) -> str:
        pnl = obj.unrealised_pnl()
        return "—" if pnl is None or not obj.is_active else money(
            pnl, obj.strategy.account.quote_currency)

    @admin.display(description="Health", ordering="health_score")
    def health(self, obj: Position) -> str:
        """The score, coloured by the one danger level (health and state together)."""
        if obj.health_score is None:
            return "—"
        level = position_danger_level(obj.state, obj.danger_level)
        colour = {"SAFE": "#1a7f37", "WARNING": "#b08800", "CRITICAL": "#cf222e"}.get(
            level, "#57606a")
        return format_html('<b style="color:{}">{}</b> {}', colour, plain(obj.health_score),
                           level)


@admin.register(PositionEvent)
class PositionEventAdmin(AppendOnlyAdmin):
    list_display = ("created_at", "position", "kind", "from_state", "to_state", "reason", "actor")
    list_filter = ("kind", "to_state", "actor")
    search_fields = ("reason", "actor", "position__symbol")
    list_select_related = ("position",)
    date_hierarchy = "created_at"


@admin.register(Trade)
class TradeAdmin(admin.ModelAdmin):
    list_display = ("id", "trade", "quantity", "entry_price", "exit_price", "result", "fees",
                    "holding", "exit_reason", "closed_at", "strategy")
    list_filter = ("exit_reason", "side", "strategy")
    search_fields = ("symbol", "external_ref", "strategy__name")
    list_select_related = ("strategy__account",)
    date_hierarchy = "closed_at"
    readonly_fields = [f.name for f in Trade._meta.fields]

    @admin.display(description="Holding", ordering="holding_seconds")
    def holding(self, obj: Trade) -> str:
        return format_age(obj.opened_at, obj.closed_at)

    @admin.display(description="Trade", ordering="symbol")
    def trade(self, obj: Trade) -> str:
        return f"{obj.symbol} {obj.side}"

    @admin.display(description="PnL (%)", ordering="pnl")
    def result(self, obj: Trade) -> str:
        """Realised PnL after fees, in the account's currency, and as % of the entry notional."""
        return f"{money(obj.pnl, obj.strategy.account.quote_currency)} ({percent(obj.pnl_percent, 2)})"

    def has_add_permission(self, request) -> bool:
        return False  # trades are written by the close path or `import_trades`
