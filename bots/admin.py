"""Admin of bot connections, their trades, and signal sources.

A webhook secret is shown once, on the page that follows its creation or rotation,
with the bot's ``webhook`` config section (or the alert template) ready to paste;
afterwards only its first characters. Every connection change is audited.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from bots.connections import (
    bot_connection_rotate_secret,
    bot_connection_save,
    signal_source_issue,
)
from bots.freqtrade import webhook_block, webhook_path
from bots.models import BotConnection, BotTrade, SignalSource, TradeSignal
from bots.selectors import connection_problems, connections_with_positions
from bots.services import bots_config
from bots.sync import bot_connection_sync
from execution.models import validate_base_url
from tradingsite.admin_helpers import AppendOnlyAdmin, format_age

ISSUED_TEMPLATE = "admin/bots/issued_secret.html"


def _issued_page(model_admin: admin.ModelAdmin, request: HttpRequest, *, title: str,
                 rows: list[dict[str, Any]]) -> TemplateResponse:
    """The one page that shows new secrets (and what to paste where); never cached."""
    response = TemplateResponse(request, ISSUED_TEMPLATE, {
        **model_admin.admin_site.each_context(request), "title": title,
        "opts": model_admin.model._meta, "rows": rows})
    response["Cache-Control"] = "no-store"
    return response


def _connection_row(request: HttpRequest, connection: BotConnection, secret: str
                    ) -> dict[str, Any]:
    block = webhook_block(connection, secret=secret, base_url=request.build_absolute_uri("/"))
    return {"name": connection.name, "secret": secret,
            "paste_hint": "the bot's config (replace its webhook section):",
            "paste": json.dumps(block, indent=2)[1:-1].strip()}


class BotConnectionForm(forms.ModelForm):
    api_url = forms.URLField(
        assume_scheme="https", validators=[validate_base_url],
        help_text=BotConnection._meta.get_field("api_url").help_text)

    class Meta:
        model = BotConnection
        exclude: list[str] = []


@admin.register(BotConnection)
class BotConnectionAdmin(admin.ModelAdmin):
    form = BotConnectionForm
    list_display = ("name", "kind", "strategy", "enabled", "health", "bot_state", "state_age",
                    "webhook_age", "sync_age", "open_positions")
    list_filter = ("kind", "enabled", "bot_state")
    search_fields = ("name", "strategy__name")
    fields = ("name", "kind", "strategy", "api_url", "username_env", "password_env", "enabled",
              "credentials", "webhook", "health", "bot_state", "bot_state_at", "last_webhook_at",
              "last_webhook_event", "last_sync_at", "last_sync_error", "close_config",
              "created_at")
    readonly_fields = ("credentials", "webhook", "health", "bot_state", "bot_state_at",
                       "last_webhook_at", "last_webhook_event", "last_sync_at",
                       "last_sync_error", "close_config", "created_at")
    actions = ["rotate_secrets", "sync_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BotConnection]:
        return connections_with_positions()

    @admin.display(description="Health")
    def health(self, obj: BotConnection) -> str:
        if obj.pk is None:
            return "—"
        problems = connection_problems(obj, timezone.now())
        return "✓ healthy" if not problems else "✗ " + "; ".join(problems)

    @admin.display(description="State since")
    def state_age(self, obj: BotConnection) -> str:
        return format_age(obj.bot_state_at)

    @admin.display(description="Last webhook")
    def webhook_age(self, obj: BotConnection) -> str:
        age = format_age(obj.last_webhook_at)
        return f"{age} ago ({obj.last_webhook_event})" if obj.last_webhook_at else age

    @admin.display(description="Last sync")
    def sync_age(self, obj: BotConnection) -> str:
        return f"{format_age(obj.last_sync_at)} ago" if obj.last_sync_at else "never"

    @admin.display(description="Open positions")
    def open_positions(self, obj: BotConnection) -> int:
        return getattr(obj, "open_positions", 0)

    @admin.display(description="Credentials")
    def credentials(self, obj: BotConnection) -> str:
        return obj.credentials_status() if obj.pk else "—"

    @admin.display(description="Webhook")
    def webhook(self, obj: BotConnection) -> str:
        if obj.pk is None:
            return "The secret is shown once, after saving."
        return format_html("POST <code>{}</code>, secret <code>{}…</code> (rotate it to see a "
                           "new one)", webhook_path(obj), obj.webhook_secret_prefix)

    @admin.display(description="Closes through the bot")
    def close_config(self, obj: BotConnection) -> str:
        if obj.pk is None:
            return "—"
        cfg = bots_config(obj)
        return (f"confirmed within {cfg.bot_close_timeout_seconds:g} s, else a CRITICAL alert"
                f"{' and a direct close' if cfg.fallback_direct_close else ''}; "
                f"synced every {cfg.bot_sync_seconds:g} s (the strategy's live_trading "
                "'bots' section)")

    def save_model(self, request: HttpRequest, obj: BotConnection, form, change: bool) -> None:
        secret = bot_connection_save(connection=obj, actor=request.user.get_username())
        if secret is not None:
            request._issued_bot_secret = secret  # shown by response_add, once

    def response_add(self, request: HttpRequest, obj: BotConnection,
                     post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(request, "_issued_bot_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return _issued_page(self, request, title=f"Bot connection {obj.name}: webhook secret",
                            rows=[_connection_row(request, obj, secret)])

    @admin.action(description="Rotate the webhook secrets (show the new ones once)",
                  permissions=["change"])
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[BotConnection]):
        rows = [_connection_row(request, connection, bot_connection_rotate_secret(
            connection, actor=request.user.get_username())) for connection in queryset]
        return _issued_page(self, request, title="New webhook secrets", rows=rows)

    @admin.action(description="Sync with the bots now", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[BotConnection]) -> None:
        for connection in queryset:
            result = bot_connection_sync(connection)
            level = messages.WARNING if result.errors or result.missing else messages.SUCCESS
            self.message_user(request, (
                f"{connection.name}: bot {result.bot_state or 'not reached'}, "
                f"{result.open_trades} open trades, adopted {result.adopted or 'none'}, "
                f"closed {result.closed or 'none'}"
                + (f", missing {result.missing}" if result.missing else "")
                + (f"; {'; '.join(result.errors)}" if result.errors else "")), level)


@admin.register(BotTrade)
class BotTradeAdmin(AppendOnlyAdmin):
    list_display = ("connection", "trade_id", "position_link", "adopted_by", "exit_requested_at",
                    "exit_deadline", "exit_error", "fallback_at", "created_at")
    list_filter = ("connection", "adopted_by")
    search_fields = ("=trade_id", "connection__name", "position__symbol")

    @admin.display(description="Position")
    def position_link(self, obj: BotTrade) -> str:
        url = reverse("admin:lifecycle_position_change", args=[obj.position_id])
        return format_html('<a href="{}">#{}</a>', url, obj.position_id)


def _signal_row(request: HttpRequest, source: SignalSource, secret: str) -> dict[str, Any]:
    url = request.build_absolute_uri(reverse("trade-signal", args=[source.strategy.name]))
    template = {"secret": secret, "signal_id": "{{strategy.order.id}}-{{timenow}}",
                "action": "open", "symbol": "BTC/USDT:USDT", "side": "long",
                "notional": "100", "price": "{{close}}"}
    return {"name": source.strategy.name, "secret": secret,
            "paste_hint": f"the alert's message (webhook URL {url}):",
            "paste": json.dumps(template, indent=2)}


@admin.register(SignalSource)
class SignalSourceAdmin(admin.ModelAdmin):
    list_display = ("strategy", "enabled", "shown_secret", "last_signal_at", "created_at")
    list_filter = ("enabled",)
    fields = ("strategy", "enabled", "shown_secret", "last_signal_at", "created_at")
    readonly_fields = ("shown_secret", "last_signal_at", "created_at")
    actions = ["rotate_secrets"]

    @admin.display(description="Secret")
    def shown_secret(self, obj: SignalSource) -> str:
        return f"{obj.secret_prefix}…" if obj.pk else "Shown once, after saving."

    def save_model(self, request: HttpRequest, obj: SignalSource, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["enabled"])
            return
        source, secret = signal_source_issue(strategy=obj.strategy,
                                             actor=request.user.get_username())
        SignalSource.objects.filter(pk=source.pk).update(enabled=obj.enabled)
        obj.pk, obj._state.adding = source.pk, False
        request._issued_signal_secret = secret

    def response_add(self, request: HttpRequest, obj: SignalSource,
                     post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(request, "_issued_signal_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return _issued_page(self, request, title=f"Signals of {obj.strategy}: secret",
                            rows=[_signal_row(request, obj, secret)])

    @admin.action(description="Rotate the secrets (show the new ones once)",
                  permissions=["change"])
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[SignalSource]):
        rows = []
        for source in queryset.select_related("strategy"):
            _, secret = signal_source_issue(strategy=source.strategy,
                                            actor=request.user.get_username())
            rows.append(_signal_row(request, source, secret))
        return _issued_page(self, request, title="New signal secrets", rows=rows)


@admin.register(TradeSignal)
class TradeSignalAdmin(AppendOnlyAdmin):
    list_display = ("signal_id", "source", "status_code", "order", "created_at")
    list_filter = ("source",)
    search_fields = ("signal_id",)
