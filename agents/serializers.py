from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from agents.models import (
    MAX_FILES_PER_AGENT,
    MAX_TOKENS_MAX,
    MAX_TOKENS_MIN,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    Agent,
    Message,
    Session,
)
from combo.api.serializers import StrictSerializerMixin


class LLMChoiceSerializer(StrictSerializerMixin, serializers.Serializer):
    provider = serializers.CharField(
        source="llm_provider", max_length=50, required=False, allow_blank=True,
        help_text="A provider configured for this deployment (another name is refused with the list of them); empty for the default.",
    )
    model = serializers.CharField(
        source="llm_model", max_length=200, required=False, allow_blank=True,
        help_text="The model name at the provider; empty for the provider's default.",
    )
    temperature = serializers.FloatField(
        min_value=TEMPERATURE_MIN, max_value=TEMPERATURE_MAX, required=False, allow_null=True
    )
    max_tokens = serializers.IntegerField(
        min_value=MAX_TOKENS_MIN, max_value=MAX_TOKENS_MAX, required=False, allow_null=True
    )

    def validate_provider(self, value):
        from agents.llm_config import check_provider

        check_provider(value)
        return value


class FileIdsField(serializers.ListField):
    """The agent's knowledge files as ids: written as the whole new list, read oldest attached file first."""

    child = serializers.UUIDField()

    def to_representation(self, files):
        ordered = sorted(files.all(), key=lambda file: (file.created_at, file.id))
        return [str(file.id) for file in ordered]


class AgentSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    llm = LLMChoiceSerializer(source="*", required=False)
    instructions = serializers.CharField(
        required=False, allow_blank=True, max_length=20000, help_text="The system prompt."
    )
    file_ids = FileIdsField(
        source="files",
        required=False,
        max_length=MAX_FILES_PER_AGENT,
        help_text="The knowledge files this agent retrieves from (ids from /v1/combo/files). "
        "Writing it replaces the whole list: [] detaches every file. Only `ready` files are searched.",
    )

    class Meta:
        model = Agent
        fields = [
            "id", "name", "description", "instructions", "opening_message", "llm", "file_ids", "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "description": {"max_length": 2000},
            "opening_message": {"max_length": 2000},
        }


class SessionSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    agent_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = Session
        fields = ["id", "agent_id", "title", "created_at", "updated_at"]
        read_only_fields = ["id", "agent_id", "created_at", "updated_at"]


class ReferenceSerializer(serializers.Serializer):
    """One passage an answer rests on (API.md, Streaming completions)."""

    id = serializers.CharField()
    file_id = serializers.CharField()
    file_name = serializers.CharField()
    content = serializers.CharField()
    score = serializers.FloatField(help_text="Higher is better; comparable within one answer.")
    position = serializers.DictField(allow_null=True, help_text='e.g. {"page": 3} or {"heading": "Setup"}, or null.')


class MessageSerializer(serializers.ModelSerializer):
    reference = ReferenceSerializer(source="references", many=True, read_only=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id", "role", "content", "reference", "status", "error", "prompt_tokens", "completion_tokens",
            "finish_reason", "latency_ms", "created_at", "completed_at",
        ]
        read_only_fields = fields

    def get_error(self, message) -> dict | None:
        if message.error_code is None:
            return None
        return {"code": message.error_code, "message": message.error_message}


class MessagePageSerializer(serializers.Serializer):
    items = MessageSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class SessionDetailSerializer(SessionSerializer):
    messages = MessagePageSerializer(read_only=True, help_text="Oldest first; page with ?limit= and ?cursor=.")

    class Meta(SessionSerializer.Meta):
        fields = SessionSerializer.Meta.fields + ["messages"]
        read_only_fields = fields


class CompletionRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    question = serializers.CharField(
        max_length=settings.COMBO_MAX_QUESTION_CHARS, allow_blank=False, trim_whitespace=True
    )
    session_id = serializers.UUIDField(required=False, allow_null=True, help_text="Omit to start a new session.")
    stream = serializers.BooleanField(required=False, default=False)


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)


class CompletionResultSerializer(serializers.Serializer):
    answer = serializers.CharField()
    reference = ReferenceSerializer(many=True)
    session_id = serializers.UUIDField()
    message_id = serializers.UUIDField()
    usage = UsageSerializer(allow_null=True)
    finish_reason = serializers.CharField(
        help_text='Why the answer ended, in the model\'s words: "stop", or "length" when max tokens cut it short '
        '(also "content_filter" and the like, as the provider reports).'
    )
