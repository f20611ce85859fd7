"""Shapes of webhooks and deliveries on /v1/integrations/webhooks. No serializer ever carries a stored secret."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.serializers import ReferenceSerializer
from combo.api.serializers import StrictSerializerMixin
from integrations import template
from integrations.models import DeliveryAttempt, Webhook, WebhookDelivery


class WebhookSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    agent_id = serializers.UUIDField(help_text="The agent that answers this webhook's events (one of yours).")
    question_template = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=template.MAX_TEMPLATE_CHARS,
        help_text=(
            "The question asked for each event, with `{{ dotted.path }}` placeholders filled from the "
            "event's JSON (missing paths render empty). Empty: the event's top-level `question` is asked."
        ),
    )
    callback_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text=(
            "Where each result is POSTed, signed with X-Combo-Signature. http(s) only; loopback, private, "
            "link-local and metadata addresses are refused unless the operator allowlists them."
        ),
    )
    require_timestamp = serializers.BooleanField(
        required=False, help_text="Accept only the timestamped signature form `t=<unix>,sha256=<hex>`."
    )
    enabled = serializers.BooleanField(required=False, help_text="A disabled webhook refuses events (10145).")
    events_url = serializers.SerializerMethodField(help_text="Where senders POST events.")
    secret_hint = serializers.CharField(
        read_only=True, help_text="The last 4 characters of the current secret, to tell secrets apart."
    )
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="After a rotation: until when the previous secret is still accepted.",
    )

    class Meta:
        model = Webhook
        fields = [
            "id", "name", "agent_id", "enabled", "question_template", "callback_url", "require_timestamp",
            "events_url", "secret_hint", "previous_secret_expires_at", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_events_url(self, webhook) -> str:
        path = reverse("webhook-events", kwargs={"id": webhook.id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class WebhookWithSecretSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (`whsec_...`). Shown only in this response; store it now.",
    )

    class Meta(WebhookSerializer.Meta):
        fields = WebhookSerializer.Meta.fields + ["secret"]


class RotateSecretSerializer(StrictSerializerMixin, serializers.Serializer):
    grace_hours = serializers.IntegerField(
        required=False, min_value=0, max_value=720,
        help_text="How long the previous secret stays valid (default: the deployment's setting, 24 h). "
        "0 retires it at once, e.g. after a leak.",
    )


class ErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField()
    message = serializers.CharField()


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "number", "redelivery", "attempted_at", "url", "address", "status_code", "latency_ms", "outcome",
            "error", "response_excerpt", "next_retry_at",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.UUIDField(read_only=True)
    session_id = serializers.UUIDField(read_only=True, allow_null=True)
    message_id = serializers.UUIDField(read_only=True, allow_null=True)
    reason = serializers.SerializerMethodField(help_text="Why a rejected call was refused (its 1xxxx code).")
    error = serializers.SerializerMethodField(help_text="Why the run failed, if it did.")
    reference = ReferenceSerializer(source="references", many=True, read_only=True)
    event = serializers.CharField(
        source="event_type", read_only=True, allow_null=True,
        help_text="The result event: completion.succeeded or completion.failed (null until the run ends).",
    )
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "webhook_id", "status", "reason", "sender_delivery_id", "signature_form",
            "signed_with_previous_secret", "body_size", "replay_count", "question", "session_id", "message_id",
            "answer", "reference", "error", "event", "created_at", "started_at", "finished_at", "duration_ms",
            "callback_status", "delivered_at", "attempts",
        ]
        read_only_fields = fields

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_reason(self, delivery):
        if delivery.reason_code is None:
            return None
        return {"code": delivery.reason_code, "message": delivery.reason_message}

    @extend_schema_field(ErrorSerializer(allow_null=True))
    def get_error(self, delivery):
        if delivery.error_code is None:
            return None
        return {"code": delivery.error_code, "message": delivery.error_message}


class DeliveryDetailSerializer(DeliverySerializer):
    payload = serializers.JSONField(read_only=True, allow_null=True, help_text="The event's JSON (accepted calls only).")

    class Meta(DeliverySerializer.Meta):
        fields = DeliverySerializer.Meta.fields + ["payload"]
        read_only_fields = fields


class EventAcceptedSerializer(serializers.Serializer):
    delivery_id = serializers.UUIDField()
    session_id = serializers.UUIDField(allow_null=True, help_text="The session the answer is written to.")
    status = serializers.ChoiceField(
        choices=WebhookDelivery.Status.choices, help_text="queued for a new event; the current status for a replay."
    )
    replayed = serializers.BooleanField(help_text="True when X-Combo-Delivery repeated an earlier event: nothing ran again.")
