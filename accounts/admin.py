"""Operators' view of users and API keys. The key hash is never shown."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey, User
from combo.admin import CheckedFiltersMixin, DeletesPartsMixin


@admin.register(User)
class UserAdmin(CheckedFiltersMixin, DeletesPartsMixin, BaseUserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("username", "email", "first_name", "last_name")


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.active()
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    list_display = ("name", "prefix", "owner", "status", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = (StatusFilter, "created_at")
    search_fields = ("name", "prefix", "owner__username", "owner__email")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    actions = ["revoke"]
    # Keys are created by their owners (shown once); operators adjust limits and revoke.
    fields = (
        "name", "owner", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at",
        "completions_per_minute", "uploads_per_minute", "default_per_minute",
    )
    readonly_fields = ("owner", "prefix", "created_at", "last_used_at", "revoked_at")

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        count = services.api_keys_revoke(queryset)
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
