"""/v1/integrations/webhooks: managing webhooks (bearer credentials) and receiving events (signatures)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.models import Agent
from combo import ratelimit
from combo.api import conditional
from combo.api.viewsets import OwnedModelViewSet, OwnedQuerysetMixin
from combo.errors import ComboError, ErrorCode
from integrations import services, signing
from integrations.models import Webhook, WebhookDelivery
from integrations.serializers import (
    DeliveryDetailSerializer,
    DeliverySerializer,
    EventAcceptedSerializer,
    RotateSecretSerializer,
    WebhookSerializer,
    WebhookWithSecretSerializer,
)


def _owned_agent(user, agent_id) -> Agent:
    agent = Agent.objects.filter(owner=user, id=agent_id).first()
    if agent is None:
        raise ComboError(ErrorCode.VALIDATION_FAILED, "No agent with this id.", errors={"agent_id": ["No agent with this id."]})
    return agent


def _check_uuid(raw) -> None:
    try:
        uuid.UUID(str(raw))
    except ValueError:
        raise Http404 from None


@conditional.documented
@extend_schema(tags=["integrations"])
class WebhookViewSet(conditional.ConditionalObjectMixin, OwnedModelViewSet):
    """Webhooks: an agent that answers signed events, optionally sending each result to a callback URL.

    GET of one webhook and PATCH answer with its ETag (a hash of the answer's
    data, which never carries the secret); GET, PATCH and DELETE evaluate
    If-Match and If-None-Match against it (a GET with If-None-Match naming it
    is a 304; a PATCH or DELETE with If-Match applies only if the webhook is
    still that version, a rotated secret included) (combo.api.conditional).
    """

    queryset = Webhook.objects.all()
    serializer_class = WebhookSerializer
    noun = "webhook"
    version_note = " Any change makes a new version, a rotated secret included."

    @extend_schema(
        summary="Create a webhook",
        responses={201: WebhookWithSecretSerializer},
        description="The response carries the signing `secret`; it is never shown again (rotate to get a new one).",
    )
    def create(self, request):
        serializer = WebhookSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        agent = _owned_agent(request.user, fields.pop("agent_id"))
        created = services.webhook_create(owner=request.user, agent=agent, **fields)
        body = WebhookWithSecretSerializer(created.webhook, context=self.get_serializer_context()).data
        return Response(body | {"secret": created.secret}, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Change a webhook")
    def partial_update(self, request, id=None):
        webhook = self.get_object()
        self.check_preconditions(webhook)
        serializer = WebhookSerializer(webhook, data=request.data, partial=True, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if "agent_id" in fields:
            fields["agent"] = _owned_agent(request.user, fields.pop("agent_id"))
        webhook = services.webhook_update(webhook=webhook, precondition=self.precondition(), **fields)
        return conditional.with_etag(Response(self.representation(webhook)))

    def perform_destroy(self, instance):
        services.webhook_delete(webhook=instance, precondition=self.precondition())

    @extend_schema(
        summary="Rotate the signing secret",
        request=RotateSecretSerializer,
        responses={200: WebhookWithSecretSerializer},
        description=(
            "Returns the new `secret` (shown only now). The previous secret keeps verifying events until "
            "`previous_secret_expires_at` (24 h by default), so senders can switch without losing an event."
        ),
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, id=None):
        webhook = self.get_object()
        serializer = RotateSecretSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rotated = services.webhook_rotate_secret(webhook=webhook, **serializer.validated_data)
        body = WebhookWithSecretSerializer(rotated.webhook, context=self.get_serializer_context()).data
        return Response(body | {"secret": rotated.secret})


_STATUS_PARAM = OpenApiParameter(
    "status", str, enum=WebhookDelivery.Status.values, description="Only deliveries with this status."
)


@extend_schema(tags=["integrations"])
class WebhookDeliveryViewSet(OwnedQuerysetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every call a webhook received (rejected ones included), its run and the attempts to send its result."""

    owner_field = "webhook__owner"
    extra_error_statuses = {"redeliver": ["409"]}
    queryset = WebhookDelivery.objects.select_related("webhook").prefetch_related("attempts")
    serializer_class = DeliverySerializer

    def get_queryset(self):
        queryset = super().get_queryset().filter(webhook_id=self.kwargs["webhook_id"])
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in WebhookDelivery.Status.values:
                raise ComboError(
                    ErrorCode.VALIDATION_FAILED,
                    errors={"status": [f"Must be one of: {', '.join(WebhookDelivery.Status.values)}."]},
                )
            queryset = queryset.filter(status=wanted)
        return queryset

    def _webhook(self) -> Webhook:
        _check_uuid(self.kwargs["webhook_id"])
        webhook = Webhook.objects.owned_by(self.request.user).filter(id=self.kwargs["webhook_id"]).first()
        if webhook is None:
            raise Http404
        return webhook

    @extend_schema(summary="List a webhook's deliveries", parameters=[_STATUS_PARAM])
    def list(self, request, *args, **kwargs):
        self._webhook()
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Read a delivery", responses={200: DeliveryDetailSerializer})
    def retrieve(self, request, *args, **kwargs):
        self._webhook()
        return Response(DeliveryDetailSerializer(self.get_object()).data)

    @extend_schema(
        summary="Send a delivery's result again",
        request=None,
        responses={202: DeliverySerializer},
        description="Starts a new send cycle (with its own retries) to the webhook's current callback URL. "
        "Only finished deliveries (succeeded or failed) of a webhook with a callback URL (else 10060).",
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request, *args, **kwargs):
        self._webhook()
        delivery = services.delivery_redeliver(delivery=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


_EVENTS_DESCRIPTION = """Senders POST a JSON object here. There is no bearer credential: the
`X-Combo-Signature` header, an HMAC-SHA256 of the raw body made with the webhook's secret,
is the authentication (docs/webhooks.md).

A valid event answers 202 at once with the delivery and session ids; the agent answers in
the background (read the outcome at `GET .../deliveries/{delivery_id}`; with a callback URL
the result is also POSTed there, signed). A repeated `X-Combo-Delivery` within 24 h answers
with the original delivery (`replayed: true`, header `Idempotent-Replayed: true`) and runs
nothing again.

Refusals, each stored as a `rejected` delivery (an unknown webhook id stores nothing):
10140 signature missing, 10141 malformed, 10142 mismatch (also a body changed after signing),
10143 timestamp older or newer than 5 minutes, 10144 this webhook requires the timestamped
form, 10145 webhook disabled, 10146 body not a JSON object, 10148 no question, 10070 body
over the limit (1 MB), 10004 malformed X-Combo-Delivery, 10060 X-Combo-Delivery reused with a
different body, 10040 no such webhook."""


class WebhookEventsView(APIView):
    """POST /v1/integrations/webhooks/{id}/events: the signature is the authentication."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    counts_its_own_requests = True  # _spend_budget, once the signature is checked
    extra_error_statuses = ["401", "403", "404", "409", "413"]
    error_descriptions = {
        "400": "Malformed signature header (10141), body not a JSON object (10146), no question (10148), "
        "malformed X-Combo-Delivery (10004).",
        "401": "Signature missing (10140), mismatched (10142), timestamp out of window (10143) or "
        "timestamped form required (10144).",
        "403": "The webhook is disabled (10145).",
        "404": "No webhook with this id (10040); nothing is recorded.",
        "409": "X-Combo-Delivery already used with a different body (10060).",
        "413": "The body is over the limit (10070).",
    }

    @extend_schema(
        operation_id="integrations_webhooks_events_create",
        summary="Receive a signed event",
        description=_EVENTS_DESCRIPTION,
        tags=["integrations"],
        auth=[],
        parameters=[
            OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The webhook's id."),
            OpenApiParameter(
                "X-Combo-Signature", str, OpenApiParameter.HEADER, required=True,
                description="`sha256=<hex of HMAC-SHA256(secret, raw body)>`, or "
                "`t=<unix seconds>,sha256=<hex of HMAC-SHA256(secret, \"<t>.<raw body>\")>`.",
            ),
            OpenApiParameter(
                "X-Combo-Delivery", str, OpenApiParameter.HEADER, required=False,
                description="The sender's id for this event (1-200 printable ASCII characters); "
                "the same id within 24 h replays the original result.",
            ),
        ],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={202: OpenApiResponse(EventAcceptedSerializer, description="Accepted; the agent runs in the background.")},
    )
    def post(self, request, id):
        try:
            webhook = Webhook.objects.select_related("agent", "owner").filter(id=uuid.UUID(str(id))).first()
        except ValueError:  # not an id at all: no such webhook either
            webhook = None
        call = _read_call(request._request)
        verified = _spend_budget(request._request, webhook, call)
        if webhook is None:
            raise ComboError(ErrorCode.NOT_FOUND, "No webhook with this id.")
        receipt = services.event_receive(webhook=webhook, call=call, verified=verified)
        delivery = receipt.delivery
        body = {
            "delivery_id": delivery.id,
            "session_id": delivery.session_id,
            "status": delivery.status,
            "replayed": receipt.replayed,
        }
        response = Response(EventAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
        if receipt.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


def _spend_budget(request, webhook: Webhook | None, call: services.InboundCall) -> signing.Verified | None:
    """One request of the webhook family (docs/rate-limits.md), after the signature is checked.

    A signed call spends its webhook's budget; any other (unsigned, forged,
    for no webhook) its sender's address's, so a flood of forged calls is
    limited per address and cannot use up the budget of the webhook's real
    sender. (The family's DRF throttle leaves this operation to the view.)
    Returns the verified signature (None: not signed with the webhook's secret).
    """
    verified = services.signature_check(webhook, call)
    decision = ratelimit.check(
        ratelimit.WEBHOOK,
        client_ip=ratelimit.request_client_ip(request),
        webhook_id=str(webhook.id) if verified is not None and webhook is not None else None,
    )
    request.combo_ratelimit = decision  # for the X-RateLimit-* headers
    if decision is not None and not decision.allowed:
        raise decision.error()
    return verified


def _read_call(request) -> services.InboundCall:
    """The raw body (at most the limit), read before anything parses it, and the headers that matter."""
    limit = settings.COMBO_WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        body, size = None, declared
    else:
        # Read from the stream, not request.body: that one refuses anything over
        # DATA_UPLOAD_MAX_MEMORY_SIZE, while this endpoint has its own limit.
        body = request.read(limit + 1)
        size = len(body)
        if size > limit:
            body = None
    return services.InboundCall(
        body=body,
        body_size=size,
        signature=request.headers.get("X-Combo-Signature"),
        delivery_id=request.headers.get("X-Combo-Delivery"),
    )
