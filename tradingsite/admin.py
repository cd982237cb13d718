from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from tradingsite.admin_helpers import AppendOnlyAdmin, confirmation_page
from tradingsite.models import (
    ApiToken,
    AuditEvent,
)
from tradingsite.tokens import api_token_issue, api_token_revoke


@admin.register(AuditEvent)
class AuditEventAdmin(AppendOnlyAdmin):
    """The audit log: readable by staff, never edited or deleted (the database refuses too)."""

    list_display = ("created_at", "actor", "action", "target_repr", "changes")
    list_filter = ("action", "target_type")
    search_fields = ("actor", "action", "target_repr", "target_id", "reason")
    date_hierarchy = "created_at"

    @admin.display(description="Changes")
    def changes(self, obj: AuditEvent) -> str:
        return ", ".join(f"{key}: {obj.before.get(key)!r} → {obj.after.get(key)!r}"
                         for key in sorted(set(obj.before) | set(obj.after)))[:300]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens by their prefix only: a key is shown once, when it is issued (or rotated here)."""

    list_display = ("user", "shown_prefix", "created_at")
    search_fields = ("user__username", "prefix")
    fields = ("user", "shown_prefix", "created_at")
    readonly_fields = ("user", "shown_prefix", "created_at")
    actions = ["rotate_tokens"]

    @admin.display(description="Token")
    def shown_prefix(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued with `api_token USER` or the rotate action

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_rotate_tokens_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        api_token_revoke(token=obj, actor=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            api_token_revoke(token=token, actor=request.user.get_username())

    @admin.action(description="Rotate selected tokens (show the new keys once)",
                  permissions=["rotate_tokens"])
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]):
        if request.POST.get("confirm") != "yes":
            return confirmation_page(self, request, "admin/tradingsite/apitoken/rotate.html",
                                     title="Rotate API tokens: are you sure?",
                                     action_name="rotate_tokens",
                                     selected=queryset.select_related("user"))
        issued = [(token.user.get_username(),
                   api_token_issue(user=token.user, actor=request.user.get_username()))
                  for token in queryset.select_related("user")]
        response = TemplateResponse(request, "admin/tradingsite/apitoken/issued.html", {
            **self.admin_site.each_context(request), "title": "New API tokens",
            "opts": self.model._meta, "issued": issued})
        response["Cache-Control"] = "no-store"
        return response
