"""Small helpers shared by the apps' admin classes."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone


def format_age(since: datetime | None, until: datetime | None = None) -> str:
    """'3h 05m' style duration, for list columns an operator scans."""
    if since is None:
        return "—"
    seconds = int(((until or timezone.now()) - since).total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{sign}{days}d {hours:02d}h"
    return f"{sign}{hours}h {minutes:02d}m"


class ReadOnlyInline(admin.TabularInline):
    """An inline that shows history and never edits it."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AppendOnlyAdmin(admin.ModelAdmin):
    """Audit rows: visible, never edited or deleted from the admin."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def confirmation_page(model_admin: admin.ModelAdmin, request: HttpRequest, template: str, *,
                      title: str, action_name: str, selected: QuerySet) -> TemplateResponse:
    """The 'are you sure?' page of an admin action (template extends admin/confirm_action.html)."""
    return TemplateResponse(request, template, {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "selected": selected,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": action_name,
    })
