"""Operators' view of agents, sessions and messages."""

from django.contrib import admin

from agents.models import Agent, Message, Session


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "llm_provider", "llm_model", "created_at", "updated_at")
    list_filter = ("llm_provider", "created_at")
    search_fields = ("name", "description", "owner__username", "id")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    readonly_fields = ("id", "created_at", "updated_at")


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "error_code", "latency_ms", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "agent", "owner", "created_at", "updated_at")
    list_filter = ("created_at",)
    search_fields = ("id", "title", "agent__name", "owner__username")
    list_select_related = ("agent", "owner")
    raw_id_fields = ("agent", "owner")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "session", "role", "status", "error_code", "provider", "model", "latency_ms", "created_at")
    list_filter = ("role", "status", "provider", "created_at")
    search_fields = ("id", "content", "session__id")
    list_select_related = ("session",)
    raw_id_fields = ("session",)
    readonly_fields = ("id", "created_at", "completed_at")
