"""Small helpers shared by the apps' admin classes."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
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
