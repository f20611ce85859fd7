"""Webhooks (Integrations → Webhooks), the events they receive, and the results they send back.

- Webhook: an agent reachable at POST /v1/integrations/webhooks/{id}/events,
  authenticated by an HMAC signature made with the webhook's secret. The
  secret is kept encrypted (vault.py), never hashed, because verifying a
  signature needs the plain secret; after a rotation the previous secret stays
  valid until `previous_secret_expires_at`.
- WebhookDelivery: one inbound call to an existing webhook. A refused call is
  stored as `rejected` with its reason (never its signature or secret); an
  accepted one goes queued → running → succeeded | failed, and, when the
  webhook has a callback URL, carries the state of sending the result there
  (`callback_status`, and while pending which try is next and when it is due).
- DeliveryAttempt: one try at sending a result to the callback URL.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class WebhookQuerySet(models.QuerySet):
    def owned_by(self, user):
        return self.filter(owner=user)


class Webhook(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="webhooks")
    enabled = models.BooleanField(default=True)
    # `{{ dotted.path }}` placeholders filled from the event's JSON (template.py);
    # empty: the payload's top-level "question" is asked.
    question_template = models.TextField(blank=True, default="", max_length=4000)
    # Where results are POSTed, signed; empty: results are only stored.
    callback_url = models.CharField(max_length=2000, blank=True, default="")
    require_timestamp = models.BooleanField(default=False)
    # Fernet tokens (vault.py), never the plain secret.
    secret_encrypted = models.TextField()
    secret_hint = models.CharField(max_length=8)
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WebhookQuerySet.as_manager()

    class Meta:
        indexes = [
            # GET /v1/integrations/webhooks: one owner's webhooks, newest first.
            models.Index(fields=["owner", "-created_at"], name="webhook_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def previous_secret_valid(self, at=None) -> bool:
        at = at or timezone.now()
        return bool(self.previous_secret_encrypted and self.previous_secret_expires_at and at < self.previous_secret_expires_at)


class WebhookDeliveryQuerySet(models.QuerySet):
    def for_webhook(self, webhook):
        return self.filter(webhook=webhook)

    def replay_of(self, webhook, key: str):
        """The accepted delivery that holds X-Combo-Delivery `key` for this webhook."""
        return self.filter(webhook=webhook, idempotency_key=key)

    def stuck(self, older_than):
        """Accepted deliveries whose run never finished (a worker died), for operators."""
        return self.filter(
            status__in=[WebhookDelivery.Status.QUEUED, WebhookDelivery.Status.RUNNING], created_at__lt=older_than
        )

    def stale_running(self, started_before):
        """Runs a worker started before the cutoff and never finished: the reaper's (services.delivery_reap_interrupted)."""
        return self.filter(status=WebhookDelivery.Status.RUNNING, started_at__lt=started_before)

    def stale_callbacks(self, due_before):
        """Callbacks still pending whose next try was due before the cutoff (services.delivery_reap_callbacks).

        A deferred retry is due at its `next_retry_at`, so one still scheduled is never among them.
        """
        return self.filter(callback_status=WebhookDelivery.CallbackStatus.PENDING, callback_due_at__lt=due_before)


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        REJECTED = "rejected"  # refused at the door; `reason_code` says why
        QUEUED = "queued"  # accepted; the agent run waits for a worker
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # the agent answered
        FAILED = "failed"  # the run ended with an error (`error_code`)

    class CallbackStatus(models.TextChoices):
        NONE = "none"  # no callback URL, or not accepted
        PENDING = "pending"  # waiting for its first attempt or a retry
        DELIVERED = "delivered"  # a 2xx answer
        FAILED = "failed"  # a final error, or the retries ran out

    class SignatureForm(models.TextChoices):
        NONE = "", "none"
        PLAIN = "plain"
        TIMESTAMPED = "timestamped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices)
    # Rejections: the 1xxxx code and message the caller got.
    reason_code = models.PositiveIntegerField(null=True, blank=True)
    reason_message = models.CharField(max_length=500, blank=True, default="")
    # X-Combo-Delivery as sent (informational, any status).
    sender_delivery_id = models.CharField(max_length=200, blank=True, default="")
    # The same value while it deduplicates: set on accepted deliveries only and
    # cleared when the idempotency window has passed and the id is reused.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    # Which header form was sent and which secret matched; never the signature itself.
    signature_form = models.CharField(max_length=16, choices=SignatureForm.choices, blank=True, default="")
    signed_with_previous_secret = models.BooleanField(default=False)
    body_size = models.PositiveIntegerField(default=0)
    body_sha256 = models.CharField(max_length=64, blank=True, default="")
    # The parsed event (accepted deliveries only: an unverified body is not kept).
    payload = models.JSONField(null=True, blank=True)
    question = models.TextField(blank=True, default="")
    # The run's outcome.
    session = models.ForeignKey(
        "agents.Session", on_delete=models.SET_NULL, null=True, blank=True, related_name="webhook_deliveries"
    )
    message = models.ForeignKey(
        "agents.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    answer = models.TextField(blank=True, default="")
    references = models.JSONField(default=list, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=500, blank=True, default="")
    replay_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)  # received
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Sending the result to the callback URL.
    callback_status = models.CharField(max_length=16, choices=CallbackStatus.choices, default=CallbackStatus.NONE)
    # Bumped by each send cycle (the first, each redeliver): a queued retry of
    # an older cycle sees the mismatch and stops, so cycles never overlap.
    callback_generation = models.PositiveIntegerField(default=0)
    # While pending: the cycle's next try (0 first, then each retry's index) and
    # when it is due (the cycle's start, then the retry's `next_retry_at`). A
    # pending callback due long ago lost its try with a killed task worker.
    callback_try = models.PositiveSmallIntegerField("next callback try", default=0)
    callback_due_at = models.DateTimeField("callback try due at", null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # GET /v1/integrations/webhooks/{id}/deliveries: newest first.
            models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_created_idx"),
            # stuck(): queued/running deliveries older than a cutoff; the reaper (stale_running); admin status filter.
            models.Index(fields=["status", "created_at"], name="delivery_status_created_idx"),
            # stale_callbacks(): pending callbacks due before a cutoff (the reaper).
            models.Index(fields=["callback_status", "callback_due_at"], name="delivery_callback_due_idx"),
        ]
        constraints = [
            # replay_of(): an X-Combo-Delivery id names at most one accepted
            # delivery per webhook, even when two copies arrive at once.
            models.UniqueConstraint(
                fields=["webhook", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="delivery_webhook_idempotency_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} {self.status} {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def event_type(self) -> str | None:
        """The result event sent to the callback URL."""
        if self.status == self.Status.SUCCEEDED:
            return "completion.succeeded"
        if self.status == self.Status.FAILED:
            return "completion.failed"
        return None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        DELIVERED = "delivered"
        RETRY = "retry"  # failed; another attempt is scheduled at `next_retry_at`
        FAILED = "failed"  # failed; final

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()  # 1, 2, ... across every send cycle of the delivery
    redelivery = models.BooleanField(default=False)  # part of a cycle started by POST .../redeliver
    attempted_at = models.DateTimeField(default=timezone.now)
    url = models.CharField(max_length=2000)
    address = models.CharField(max_length=64, blank=True, default="")  # the vetted IP connected to
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.CharField(max_length=500, blank=True, default="")
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            # A delivery's attempts in order (API, admin inline); numbers never repeat.
            models.UniqueConstraint(fields=["delivery", "number"], name="attempt_delivery_number_uniq"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"
