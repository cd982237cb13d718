"""The admin: channels (secrets never shown), messages with their delivery log, failures."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.forms.models import model_to_dict
from django.http import HttpRequest

from notifications.channels import display_url
from notifications.delivery import send_test
from notifications.models import (
    ChannelSource,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Notification,
    NotificationChannel,
)
from tradingsite.admin_helpers import AppendOnlyAdmin, ReadOnlyInline, format_age
from tradingsite.audit import audit_record, changed_fields

AUDITED_FIELDS = ("name", "url", "enabled", "min_severity", "kinds", "exclude_kinds",
                  "rate_limit_messages", "rate_limit_seconds", "quiet_start", "quiet_end")
ROUTING = ("min_severity", "kinds", "exclude_kinds", "rate_limit_messages",
           "rate_limit_seconds", "quiet_start", "quiet_end")
STATE_FIELDS = ("failures", "retry_at", "last_sent_at", "last_failed_at", "last_error")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "enabled", "shown_url", "min_severity", "kinds",
                    "rate", "quiet_hours", "health", "waiting")
    list_filter = ("source", "enabled", "min_severity")
    search_fields = ("name", "kinds")
    actions = ["send_test_message"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationChannel]:
        return super().get_queryset(request).annotate(waiting_count=Count(
            "deliveries", filter=Q(deliveries__state__in=DeliveryState.waiting())))

    def get_fields(self, request: HttpRequest, obj: NotificationChannel | None = None):
        if obj is not None and obj.source == ChannelSource.ENV:
            return ("name", "source", "shown_url", "enabled", *ROUTING, *STATE_FIELDS)
        return ("name", "url", "enabled", *ROUTING, *STATE_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: NotificationChannel | None = None):
        if obj is not None and obj.source == ChannelSource.ENV:
            return ("name", "source", "shown_url", "enabled", *ROUTING, *STATE_FIELDS)
        return STATE_FIELDS

    def has_change_permission(self, request: HttpRequest, obj: NotificationChannel | None = None
                              ) -> bool:
        if obj is not None and obj.source == ChannelSource.ENV:
            return False  # NOTIFY_URLS decides: the page shows it, read-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: NotificationChannel | None = None
                              ) -> bool:
        if obj is not None and obj.source == ChannelSource.ENV:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="URL (secrets hidden)")
    def shown_url(self, obj: NotificationChannel) -> str:
        return display_url(obj)

    @admin.display(description="Rate limit")
    def rate(self, obj: NotificationChannel) -> str:
        if obj.rate_limit_messages or obj.rate_limit_seconds:
            return f"{obj.rate_limit_messages or 'default'} / {obj.rate_limit_seconds or '…'} s"
        return "site default"

    @admin.display(description="Quiet hours")
    def quiet_hours(self, obj: NotificationChannel) -> str:
        if obj.quiet_start is None:
            return "—"
        return f"{obj.quiet_start:%H:%M}–{obj.quiet_end:%H:%M}"

    @admin.display(description="Status")
    def health(self, obj: NotificationChannel) -> str:
        if obj.failures:
            return f"FAILING ({obj.failures} in a row, last {format_age(obj.last_failed_at)} ago)"
        if obj.last_sent_at:
            return f"ok, last sent {format_age(obj.last_sent_at)} ago"
        return "nothing sent yet"

    @admin.display(description="Waiting", ordering="waiting_count")
    def waiting(self, obj: NotificationChannel) -> int:
        return getattr(obj, "waiting_count", 0)

    def save_model(self, request: HttpRequest, obj: NotificationChannel, form, change: bool
                   ) -> None:
        """Audited: where messages go is as sensitive as where orders go."""
        before = (model_to_dict(NotificationChannel.objects.get(pk=obj.pk), AUDITED_FIELDS)
                  if change else {})
        super().save_model(request, obj, form, change)
        old, new = changed_fields(before, model_to_dict(obj, AUDITED_FIELDS), AUDITED_FIELDS)
        if new:
            audit_record(actor=request.user.get_username(),
                         action="notification_channel." + ("update" if change else "create"),
                         target=obj, before=old if change else {}, after=new)

    def delete_model(self, request: HttpRequest, obj: NotificationChannel) -> None:
        audit_record(actor=request.user.get_username(), action="notification_channel.delete",
                     target=obj, before=model_to_dict(obj, AUDITED_FIELDS))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Send a test message now", permissions=["change"])
    def send_test_message(self, request: HttpRequest, queryset: QuerySet) -> None:
        actor = request.user.get_username()
        for channel in queryset:
            for outcome in send_test(channel_name=channel.name, actor=actor):
                if outcome.ok:
                    self.message_user(request, f"{outcome.channel}: delivered.", messages.SUCCESS)
                else:
                    self.message_user(request, f"{outcome.channel}: not delivered "
                                               f"({outcome.detail}).", messages.ERROR)


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fk_name = "notification"
    fields = ("channel", "state", "attempts", "next_attempt_at", "sent_at", "digest",
              "last_error")
    readonly_fields = fields


class DeliveryStateFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin):
        return [(DeliveryState.FAILED, "failed on a channel"),
                ("waiting", "still waiting on a channel"),
                ("none", "no channel took it")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == DeliveryState.FAILED:
            return queryset.filter(deliveries__state=DeliveryState.FAILED).distinct()
        if self.value() == "waiting":
            return queryset.filter(deliveries__state__in=DeliveryState.waiting()).distinct()
        if self.value() == "none":
            return queryset.filter(routed_at__isnull=False, deliveries__isnull=True)
        return queryset


@admin.register(Notification)
class NotificationAdmin(AppendOnlyAdmin):
    list_display = ("created_at", "severity", "kind", "title", "position", "outcome")
    list_filter = ("severity", DeliveryStateFilter, "kind")
    search_fields = ("title", "body", "kind", "dedupe_key")
    list_select_related = ("position",)
    date_hierarchy = "created_at"
    inlines = [DeliveryInline]
    fields = ("created_at", "severity", "kind", "title", "body", "link", "position",
              "dedupe_key", "duplicate_of", "channel", "routed_at", "context")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).annotate(
            sent_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.SENT)),
            failed_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.FAILED)),
            folded_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.FOLDED)),
            total_count=Count("deliveries"))

    @admin.display(description="Delivery")
    def outcome(self, obj: Notification) -> str:
        if obj.routed_at is None:
            return "not routed yet"
        if not obj.total_count:
            return "no channel takes it"
        parts = [f"sent {obj.sent_count}/{obj.total_count}"]
        if obj.folded_count:
            parts.append(f"folded {obj.folded_count}")
        if obj.failed_count:
            parts.append(f"FAILED {obj.failed_count}")
        return ", ".join(parts)


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("at", "ok", "duration_ms", "detail")
    readonly_fields = fields
    show_change_link = False


@admin.register(Delivery)
class DeliveryAdmin(AppendOnlyAdmin):
    """The delivery log: one row per message and channel, every attempt inline."""

    list_display = ("created_at", "notification", "channel", "severity", "state", "attempts",
                    "next_attempt_at", "sent_at", "last_error")
    list_filter = ("state", "severity", "channel")
    search_fields = ("notification__title", "last_error", "channel__name")
    list_select_related = ("notification", "channel")
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    readonly_fields = [f.name for f in Delivery._meta.fields]
