"""Operators' view of webhooks and deliveries. Secrets are never shown (not even encrypted)."""

from urllib.parse import urlsplit

from django.contrib import admin

from combo.admin import CheckedFiltersMixin
from integrations.models import DeliveryAttempt, Webhook, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "agent", "enabled", "callback_host", "require_timestamp", "created_at")
    list_filter = ("enabled", "require_timestamp", "created_at")
    search_fields = ("id", "name", "owner__username", "owner__email", "agent__name", "callback_url")
    list_select_related = ("owner", "agent")
    date_hierarchy = "created_at"
    # Only what an operator may need to change; the secret fields are not in the form at all.
    fields = (
        "id", "name", "owner", "agent", "enabled", "require_timestamp", "question_template", "callback_url",
        "secret_hint", "secret_rotated_at", "previous_secret_expires_at", "created_at", "updated_at",
    )
    readonly_fields = (
        "id", "owner", "agent", "question_template", "callback_url", "secret_hint", "secret_rotated_at",
        "previous_secret_expires_at", "created_at", "updated_at",
    )
    actions = ["disable"]

    def has_add_permission(self, request):
        # Webhooks are made by their owners, who must see the secret once.
        return False

    @admin.display(description="callback host")
    def callback_host(self, webhook):
        return urlsplit(webhook.callback_url).hostname or "—"

    @admin.action(description="Disable selected webhooks")
    def disable(self, request, queryset):
        count = queryset.update(enabled=False)
        self.message_user(request, f"Disabled {count} webhook(s).")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = (
        "number", "redelivery", "attempted_at", "url", "address", "status_code", "latency_ms", "outcome", "error",
        "next_retry_at",
    )
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    list_display = (
        "id", "webhook", "status", "reason_code", "callback_status", "created_at", "duration_ms", "replay_count",
    )
    list_filter = ("status", "callback_status", "reason_code", "signature_form", "created_at")
    search_fields = ("id", "webhook__id", "webhook__name", "sender_delivery_id", "session__id")
    list_select_related = ("webhook",)
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields] + ["duration_ms"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
