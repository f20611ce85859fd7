"""Agents, their sessions and the messages in them; the knowledge files agents answer from.

A Message of the assistant is written `in_progress` before generation starts and
finished afterwards, so a crash leaves a row a reaper can find and mark
`interrupted`: no question is ever left without a recorded outcome.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

# Keeps one agent's retrieval query (an IN list of its files) reasonable.
MAX_FILES_PER_AGENT = 1000
# An agent's LLM settings (API.md): the API, the console and Django admin all hold agents to these.
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.0, 2.0
MAX_TOKENS_MIN, MAX_TOKENS_MAX = 1, 200_000


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="", max_length=2000)
    instructions = models.TextField(blank=True, default="", max_length=20000)
    opening_message = models.TextField(blank=True, default="", max_length=2000)
    # The LLM choice: a provider configured for this deployment ("" = the default one).
    llm_provider = models.CharField(max_length=50, blank=True, default="")
    llm_model = models.CharField(max_length=200, blank=True, default="")
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(TEMPERATURE_MIN), MaxValueValidator(TEMPERATURE_MAX)]
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(MAX_TOKENS_MIN), MaxValueValidator(MAX_TOKENS_MAX)]
    )
    # The knowledge files this agent retrieves from (only the `ready` ones count).
    files = models.ManyToManyField("KnowledgeFile", related_name="agents", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # GET /v1/combo/agents: one owner's agents, newest first.
            models.Index(fields=["owner", "-created_at"], name="agent_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        from agents import llm_config

        try:
            llm_config.check_provider(self.llm_provider)
        except ValidationError as error:
            # An agent whose provider this deployment dropped keeps it while other
            # fields change (completions answer 502 until it is changed); only
            # choosing an unconfigured provider is refused.
            stored = None
            if not self._state.adding:
                stored = Agent.objects.filter(pk=self.pk).values_list("llm_provider", flat=True).first()
            if stored != self.llm_provider:
                raise ValidationError({"llm_provider": error.error_list}) from None


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="sessions")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions")
    title = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # GET /v1/combo/agents/{id}/sessions: one agent's sessions, newest first.
            models.Index(fields=["agent", "-created_at"], name="session_agent_created_idx"),
        ]

    def __str__(self) -> str:
        return self.title or str(self.id)


class MessageQuerySet(models.QuerySet):
    def stale_in_progress(self, older_than):
        return self.filter(status=Message.Status.IN_PROGRESS, created_at__lt=older_than)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETE = "complete"
        FAILED = "failed"
        INTERRUPTED = "interrupted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    references = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=500, blank=True, default="")
    provider = models.CharField(max_length=50, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Why a complete answer ended, in the model's words: "stop", "length" (cut
    # by max tokens), "content_filter", ...; null while unfinished or failed.
    finish_reason = models.CharField(max_length=32, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        indexes = [
            # A session's history, oldest first (session read, prompt history).
            models.Index(fields=["session", "created_at"], name="message_session_created_idx"),
            # The reaper: in_progress answers older than a timeout.
            models.Index(fields=["status", "created_at"], name="message_status_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


def _original_path(instance: KnowledgeFile, filename: str) -> str:
    # Never the uploader's file name (it is kept in `name`): ids only, fanned out.
    return f"knowledge/{instance.id.hex[:2]}/{instance.id.hex}"


class KnowledgeFileQuerySet(models.QuerySet):
    def ready(self):
        return self.filter(status=KnowledgeFile.Status.READY)


class KnowledgeFile(models.Model):
    """A file an owner uploaded for agents to answer from.

    The original is kept through Django's storage API (MEDIA_ROOT in the data
    folder by default), so moving to S3-compatible storage is a settings change.
    Status moves queued -> processing -> ready | failed, in the background task.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="knowledge_files")
    name = models.CharField(max_length=255, help_text="The file name as uploaded.")
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, help_text="text, markdown, html, pdf, docx, csv, json or code.")
    original = models.FileField(upload_to=_original_path, max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.CharField(max_length=1000, blank=True, default="")
    chunk_count = models.PositiveIntegerField(default=0)
    characters = models.PositiveBigIntegerField(default=0)
    pages = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = KnowledgeFileQuerySet.as_manager()

    class Meta:
        constraints = [
            # Upload dedupe: "has this owner sent these exact bytes before?" is a
            # lookup on (owner, sha256), and two racing uploads of the same bytes
            # cannot both insert (the loser returns the winner's file).
            models.UniqueConstraint(fields=["owner", "sha256"], name="knowledgefile_owner_sha256_uniq"),
        ]
        indexes = [
            # GET /v1/combo/files: one owner's files, newest first.
            models.Index(fields=["owner", "-created_at"], name="kfile_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class Chunk(models.Model):
    """A citable piece of a file's text: what retrieval finds and completions quote.

    The integer id is the row id the full-text index is keyed by (SQLite FTS5
    `content_rowid`); the PostgreSQL index is a generated tsvector column. Both
    are created by migration 0002 for their own database only.
    """

    id = models.BigAutoField(primary_key=True)
    file = models.ForeignKey(KnowledgeFile, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField(help_text="0-based order within the file.")
    text = models.TextField()
    position = models.JSONField(null=True, blank=True, help_text='e.g. {"page": 3} or {"heading": "Setup"}')

    class Meta:
        constraints = [
            # One chunk per place in a file; also serves "a file's chunks in order".
            models.UniqueConstraint(fields=["file", "index"], name="chunk_file_index_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.file_id}:{self.index}"

    @property
    def reference_id(self) -> str:
        return f"{self.file_id}:{self.index}"
