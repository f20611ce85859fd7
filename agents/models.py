"""Agents, their sessions and the messages in them.

A Message of the assistant is written `in_progress` before generation starts and
finished afterwards, so a crash leaves a row a reaper can find and mark
`interrupted`: no question is ever left without a recorded outcome.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


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
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # GET /v1/combo/agents: one owner's agents, newest first.
            models.Index(fields=["owner", "-created_at"], name="agent_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name


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
