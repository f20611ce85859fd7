"""Operators' view of agents, sessions, messages and knowledge files."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html

from agents import services
from agents.knowledge.services import knowledge_file_delete, knowledge_file_requeue
from agents.models import MAX_FILES_PER_AGENT, Agent, Chunk, KnowledgeFile, Message, Session
from combo.admin import CheckedFiltersMixin, DeletesPartsMixin


class AgentAdminForm(forms.ModelForm):
    """An agent as the API would accept it.

    The provider, temperature and max_tokens rules are the model's (validators
    and Agent.clean(), which the form runs); the files must be the owner's, at
    most MAX_FILES_PER_AGENT of them, as `agents.services` requires.
    """

    class Meta:
        model = Agent
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        owner, files = cleaned.get("owner"), cleaned.get("files")
        if owner is None or files is None:
            return cleaned
        files = list(files)
        if len(files) > MAX_FILES_PER_AGENT:
            self.add_error("files", f"An agent may have at most {MAX_FILES_PER_AGENT} files.")
            return cleaned
        missing = services.files_not_owned(owner_id=owner.pk, file_ids=[file.pk for file in files])
        if missing:
            self.add_error("files", [f"{owner.get_username()} has no file with id {file_id}." for file_id in missing])
        return cleaned


@admin.register(Agent)
class AgentAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ("name", "owner", "llm_provider", "llm_model", "created_at", "updated_at")
    list_filter = ("llm_provider", "created_at")
    search_fields = ("name", "description", "owner__username", "id")
    list_select_related = ("owner",)
    raw_id_fields = ("owner", "files")
    readonly_fields = ("id", "created_at", "updated_at")


# A session's page shows its latest messages; all of them are on the Messages list, filtered to it.
MESSAGES_SHOWN = 50


class LatestMessagesFormSet(forms.BaseInlineFormSet):
    def get_queryset(self):
        return super().get_queryset().order_by("-created_at", "-id")[:MESSAGES_SHOWN]


class MessageInline(admin.TabularInline):
    model = Message
    formset = LatestMessagesFormSet
    verbose_name_plural = f"messages (the latest {MESSAGES_SHOWN}, newest first)"
    extra = 0
    fields = ("role", "status", "content", "error_code", "latency_ms", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Session)
class SessionAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    list_display = ("id", "title", "agent", "owner", "created_at", "updated_at")
    list_filter = ("created_at",)
    search_fields = ("id", "title", "agent__name", "owner__username")
    list_select_related = ("agent", "owner")
    raw_id_fields = ("agent", "owner")
    readonly_fields = ("all_messages",)
    inlines = [MessageInline]

    @admin.display(description="messages")
    def all_messages(self, session):
        if session.pk is None:
            return "-"
        count = session.messages.count()
        url = reverse("admin:agents_message_changelist") + f"?session__id__exact={session.pk}"
        return format_html('<a href="{}">All {} message(s) of this session</a>', url, count)


@admin.register(Message)
class MessageAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    list_display = ("id", "session", "role", "status", "error_code", "provider", "model", "latency_ms", "created_at")
    list_filter = ("role", "status", "provider", "created_at")
    search_fields = ("id", "content", "session__id")
    list_select_related = ("session",)
    raw_id_fields = ("session",)
    readonly_fields = ("id", "created_at", "completed_at")


@admin.register(KnowledgeFile)
class KnowledgeFileAdmin(CheckedFiltersMixin, DeletesPartsMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "kind", "size", "status", "chunk_count", "created_at")
    list_filter = ("status", "kind", "created_at")
    search_fields = ("name", "sha256", "id", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    readonly_fields = (
        "id", "owner", "name", "size", "sha256", "kind", "original_file", "status", "failure_reason", "chunk_count",
        "characters", "pages", "created_at", "updated_at", "processed_at",
    )
    # The original is shown (and downloaded) through original_file, never replaced here.
    exclude = ("original",)
    actions = ["reingest", "delete_with_original"]

    def has_add_permission(self, request):
        return False  # files arrive through the API, which sniffs and dedupes them

    def get_urls(self):
        # Before the default patterns: their "<path:object_id>/" would take ".../original/" too.
        original = path(
            "<path:object_id>/original/",
            self.admin_site.admin_view(self.original_view),
            name="agents_knowledgefile_original",
        )
        return [original, *super().get_urls()]

    @admin.display(description="Original")
    def original_file(self, file):
        # The storage's own URL (MEDIA_URL) is served by nothing: originals are private to their owner.
        url = reverse(f"{self.admin_site.name}:agents_knowledgefile_original", args=[file.pk])
        return format_html('<a href="{}">Download {}</a>', url, file.name)

    def original_view(self, request, object_id):
        """The stored original, to staff who may view the file: a download under the uploader's name."""
        file = self.get_object(request, unquote(object_id))
        if file is None:
            raise Http404("No such knowledge file.")
        if not self.has_view_permission(request, file):
            raise PermissionDenied
        try:
            handle = file.original.open("rb")
        except OSError:
            raise Http404("The stored copy of this file is missing.") from None
        # Never rendered on this site's origin (an uploaded HTML file is only data here).
        return FileResponse(handle, as_attachment=True, filename=file.name, content_type="application/octet-stream")

    @admin.action(description="Re-ingest (parse, chunk and index again)")
    def reingest(self, request, queryset):
        count = knowledge_file_requeue(files=queryset)
        self.message_user(request, f"Queued {count} file(s) for ingestion.", messages.SUCCESS)

    @admin.action(description="Delete, with chunks and stored originals")
    def delete_with_original(self, request, queryset):
        count = 0
        for file in queryset:
            knowledge_file_delete(file=file)
            count += 1
        self.message_user(request, f"Deleted {count} file(s).", messages.SUCCESS)

    def delete_model(self, request, obj):
        knowledge_file_delete(file=obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The bulk delete would leave stored originals behind; delete_with_original replaces it.
        actions.pop("delete_selected", None)
        return actions


@admin.register(Chunk)
class ChunkAdmin(CheckedFiltersMixin, admin.ModelAdmin):
    list_display = ("id", "file", "index", "position", "short_text")
    search_fields = ("text", "file__name", "file__id")
    list_select_related = ("file",)
    readonly_fields = ("id", "file", "index", "text", "position")
    # Never deleted here, but with their file (or its owner): combo.admin.DeletesPartsMixin.
    deleted_with_parent = True

    @admin.display(description="text")
    def short_text(self, chunk):
        return chunk.text[:80]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # chunks belong to their file's ingestion
