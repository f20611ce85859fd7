from __future__ import annotations

from rest_framework import serializers

from agents.models import KnowledgeFile
from combo.api.serializers import StrictSerializerMixin


class KnowledgeFileSerializer(serializers.ModelSerializer):
    name = serializers.CharField(read_only=True, help_text="The file name as uploaded.")
    kind = serializers.CharField(
        read_only=True, help_text="What the content was recognised as: text, markdown, html, pdf, docx, csv, json or code."
    )
    failure_reason = serializers.SerializerMethodField(
        help_text="Why ingestion failed, in words the uploader can act on; null unless status is failed."
    )
    pages = serializers.IntegerField(read_only=True, allow_null=True, help_text="Pages, for PDFs; else null.")
    agent_ids = serializers.SerializerMethodField(help_text="The caller's agents this file is attached to.")

    class Meta:
        model = KnowledgeFile
        fields = [
            "id", "name", "size", "sha256", "kind", "status", "failure_reason", "chunk_count", "characters",
            "pages", "agent_ids", "created_at", "updated_at", "processed_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "status": {
                "help_text": "queued -> processing -> ready (searchable) or failed (see failure_reason)."
            },
            "chunk_count": {"help_text": "Chunks indexed for retrieval (0 until ready)."},
            "characters": {"help_text": "Characters of text extracted (0 until ready)."},
            "processed_at": {"help_text": "When ingestion last finished (ready or failed)."},
        }

    def get_failure_reason(self, file: KnowledgeFile) -> str | None:
        if file.status != KnowledgeFile.Status.FAILED:
            return None
        return file.failure_reason or None

    def get_agent_ids(self, file: KnowledgeFile) -> list[str]:
        return sorted(str(agent.id) for agent in file.agents.all())


class KnowledgeFileUploadSerializer(StrictSerializerMixin, serializers.Serializer):
    """The multipart form of POST /v1/combo/files (documents the request; the view reads it)."""

    file = serializers.FileField(
        allow_empty_file=True,
        help_text="The document: text, Markdown, HTML, PDF, DOCX, CSV, JSON or source code. "
        "At most COMBO_MAX_UPLOAD_BYTES (20 MiB by default).",
    )
    agent_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="One of your agents to attach the file to at once."
    )
