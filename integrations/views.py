"""Console pages for Integrations → Webhooks: list, create, overview, settings, secret, rotate, delete, deliveries.

Every page looks webhooks up through `_owned_webhook`, so another user's
webhook is a 404 exactly like one that does not exist. Every change goes
through integrations.services (the same rules as the API: owned agent,
template placeholders, the SSRF guard), and a refusal is shown next to its
field.

The plain secret appears only in the response to a POST: creating the
webhook, rotating its secret, or the explicit Reveal action; each of those
responses is sent with `Cache-Control: no-store`, and a GET never shows it.
The settings form carries the version of the webhook it was opened on, and a
save over a change made meanwhile is refused, with the saved values shown
(combo.editversions).
Creating and rotating carry a one-time form token kept in the session, so
reloading the page that showed a secret does not create a second webhook or
rotate a second time (which would retire the secret senders still use).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from agents.models import Agent
from combo import editversions, formtokens
from combo.errors import ComboError, ErrorCode
from integrations import examples, services, vault
from integrations.forms import RotateForm, WebhookForm
from integrations.models import Webhook, WebhookDelivery

logger = logging.getLogger("combo.webhooks")

DELIVERIES_SHOWN = 50
REDELIVERABLE = (WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED)

# --- One-time form tokens (create, rotate) ----------------------------------------

_FORM_TOKENS = "webhook_form_tokens"


# --- Helpers --------------------------------------------------------------------------


def _owned_webhook(request, webhook_id) -> Webhook:
    return get_object_or_404(Webhook.objects.select_related("agent"), id=webhook_id, owner=request.user)


def callback_host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def events_url(request, webhook: Webhook) -> str:
    return request.build_absolute_uri(reverse("webhook-events", kwargs={"id": webhook.id}))


def _overview(request, webhook: Webhook, *, shown_secret: str = "", shown_reason: str = "", status: int = 200):
    """The webhook's main page; `shown_secret` only in the response to a POST that made or revealed it."""
    url = events_url(request, webhook)
    counts = dict(
        WebhookDelivery.objects.filter(webhook=webhook).values_list("status").annotate(n=Count("id")).order_by()
    )
    context = {
        "webhook": webhook,
        "tab": "overview",
        "events_url": url,
        "callback_host": callback_host(webhook.callback_url),
        "signing_sample": examples.curl_openssl(
            events_url=url, question_template=webhook.question_template, timestamped=webhook.require_timestamp
        ),
        "previous_valid": webhook.previous_secret_valid(),
        "grace_hours": settings.COMBO_WEBHOOK_SECRET_GRACE_HOURS,
        "delivery_total": sum(counts.values()),
        "delivery_counts": counts,
        "last_delivery": WebhookDelivery.objects.filter(webhook=webhook).order_by("-created_at").first(),
        "shown_secret": shown_secret,
        "shown_reason": shown_reason,
    }
    return render(request, "integrations/webhook_overview.html", context, status=status)


# --- Pages ----------------------------------------------------------------------------


@login_required
def integrations_home(request):
    return redirect("console:webhooks")


@login_required
@require_GET
def webhook_list(request):
    latest = WebhookDelivery.objects.filter(webhook=OuterRef("pk")).order_by("-created_at")
    webhooks = (
        Webhook.objects.owned_by(request.user)
        .select_related("agent")
        .annotate(
            last_delivery_status=Subquery(latest.values("status")[:1]),
            last_delivery_at=Subquery(latest.values("created_at")[:1]),
        )
        .order_by("-created_at")
    )
    rows = [(webhook, callback_host(webhook.callback_url)) for webhook in webhooks]
    has_agents = Agent.objects.filter(owner=request.user).exists()
    return render(request, "integrations/webhook_list.html", {"rows": rows, "has_agents": has_agents})


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def webhook_create(request):
    if request.method == "GET":
        form = WebhookForm(owner=request.user)
        context = {"form": form, "form_token": formtokens.issue(request, _FORM_TOKENS), "has_agents": form.fields["agent"].queryset.exists()}
        return render(request, "integrations/webhook_create.html", context)

    sent = formtokens.Submission(
        request, _FORM_TOKENS, back="console:webhooks",
        note=(
            "That form was already sent, and its webhook is in the list below. Its secret was shown once; "
            "open the webhook to reveal it."
        ),
        note_at_once="That form was already sent, and its webhook is in the list below.",
    )
    form = WebhookForm(request.POST, owner=request.user)
    if refused := sent.refuse_repeat(form):
        return refused
    if form.is_valid():
        try:
            with sent.acting():
                created = services.webhook_create(owner=request.user, **form.webhook_fields())
        except ComboError as exc:
            form.add_service_errors(exc)  # the corrected form may be sent with the same token
        else:
            return _overview(request, created.webhook, shown_secret=created.secret, shown_reason="created", status=201)
    context = {"form": form, "form_token": sent.token, "has_agents": True}
    return render(request, "integrations/webhook_create.html", context, status=400)


@login_required
@require_GET
def webhook_overview(request, webhook_id):
    return _overview(request, _owned_webhook(request, webhook_id))


@login_required
@require_http_methods(["GET", "POST"])
def webhook_edit(request, webhook_id):
    webhook = _owned_webhook(request, webhook_id)
    form = WebhookForm(request.POST or None, owner=request.user, webhook=webhook)
    # The version of the webhook the page was opened on travels with the form (combo.editversions).
    version = request.POST.get(editversions.FIELD, "") if form.is_bound else None
    conflict = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            fields = form.webhook_fields()
            # Only what changed: an unchanged callback URL is not vetted again on every save.
            changed = {name: fields[name] for name in form.changed_data}
            precondition = editversions.unchanged_since(version, WebhookForm.edited_values)
            try:
                if changed:
                    services.webhook_update(webhook=webhook, precondition=precondition, **changed)
            except editversions.EditConflict as exc:
                # Changed meanwhile: nothing saved; the form keeps the input, now against the webhook as saved.
                conflict = editversions.refuse(form, exc, noun="webhook")
                version, status = exc.version, 409
                webhook.refresh_from_db()
            except ComboError as exc:
                if exc.error == ErrorCode.NOT_FOUND:
                    raise Http404 from None  # deleted meanwhile
                form.add_service_errors(exc)
                webhook.refresh_from_db()
            else:
                messages.success(request, f"Saved “{webhook.name}”." if changed else "Nothing to save: no field changed.")
                return redirect("console:webhook-edit", webhook_id=webhook.id)
    if version is None:
        version = editversions.of(WebhookForm.edited_values(webhook))
    context = {"webhook": webhook, "form": form, "tab": "settings", "edit_version": version, "conflict": conflict}
    return render(request, "integrations/webhook_edit.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def webhook_secret(request, webhook_id):
    """Reveal: only the POST from the webhook's page shows the current secret, on its response only."""
    webhook = _owned_webhook(request, webhook_id)
    if request.method == "GET":
        return redirect("console:webhook", webhook_id=webhook.id)
    try:
        secret = vault.decrypt(webhook.secret_encrypted)
    except vault.SecretUnreadable:
        messages.error(
            request,
            "This webhook's secret cannot be decrypted on this server (its encryption key changed). "
            "Rotate the secret to get a new one.",
        )
        return redirect("console:webhook", webhook_id=webhook.id)
    logger.info("webhook %s: secret revealed in the console to user %s", webhook.id, request.user.pk)
    return _overview(request, webhook, shown_secret=secret, shown_reason="revealed")


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def webhook_rotate(request, webhook_id):
    """GET asks for confirmation; the POST from that page rotates and shows the new secret once."""
    webhook = _owned_webhook(request, webhook_id)
    form = RotateForm(request.POST or None)
    if request.method == "POST":
        sent = formtokens.Submission(
            request, _FORM_TOKENS, back=reverse("console:webhook", kwargs={"webhook_id": webhook.id}),
            note=(
                "That rotation was already done; the secret was not rotated again. "
                "Use Reveal secret to see the current one."
            ),
            note_at_once="That rotation was already done; the secret was not rotated again.",
        )
        if refused := sent.refuse_repeat(form):
            return refused
        if form.is_valid():
            grace_hours = 0 if form.cleaned_data["retire_now"] else None
            with sent.acting():
                rotated = services.webhook_rotate_secret(webhook=webhook, grace_hours=grace_hours)
            return _overview(request, rotated.webhook, shown_secret=rotated.secret, shown_reason="rotated")
    context = {
        "webhook": webhook,
        "form": form,
        "form_token": formtokens.issue(request, _FORM_TOKENS),
        "grace_hours": settings.COMBO_WEBHOOK_SECRET_GRACE_HOURS,
        "grace_until": timezone.now() + timedelta(hours=settings.COMBO_WEBHOOK_SECRET_GRACE_HOURS),
        "previous_valid": webhook.previous_secret_valid(),
        "tab": "overview",
    }
    return render(request, "integrations/webhook_rotate.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def webhook_delete(request, webhook_id):
    """GET asks for confirmation; only the POST from that page deletes."""
    webhook = _owned_webhook(request, webhook_id)
    if request.method == "POST":
        name = webhook.name
        services.webhook_delete(webhook=webhook)
        messages.success(request, f"Deleted “{name}” and its deliveries. Its events URL now answers 404.")
        return redirect("console:webhooks")
    context = {"webhook": webhook, "deliveries": webhook.deliveries.count(), "tab": "settings"}
    return render(request, "integrations/webhook_delete.html", context)


@login_required
@require_GET
def webhook_deliveries(request, webhook_id):
    webhook = _owned_webhook(request, webhook_id)
    wanted = request.GET.get("status", "")
    if wanted not in WebhookDelivery.Status.values:
        wanted = ""
    deliveries = WebhookDelivery.objects.filter(webhook=webhook).prefetch_related("attempts").order_by("-created_at")
    total = deliveries.count()
    if wanted:
        deliveries = deliveries.filter(status=wanted)
    shown = list(deliveries[:DELIVERIES_SHOWN])
    for delivery in shown:
        delivery.can_redeliver = bool(webhook.callback_url) and delivery.status in REDELIVERABLE
        delivery.queued_ms = (
            int((delivery.started_at - delivery.created_at).total_seconds() * 1000) if delivery.started_at else None
        )
    context = {
        "webhook": webhook,
        "tab": "deliveries",
        "deliveries": shown,
        "total": total,
        "limit": DELIVERIES_SHOWN,
        "status_choices": WebhookDelivery.Status.choices,
        "wanted": wanted,
        "callback_host": callback_host(webhook.callback_url),
    }
    return render(request, "integrations/webhook_deliveries.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def delivery_redeliver(request, webhook_id, delivery_id):
    """Redeliver (POST only); a GET goes back to the delivery on the deliveries page."""
    webhook = _owned_webhook(request, webhook_id)
    delivery = get_object_or_404(WebhookDelivery, id=delivery_id, webhook=webhook)
    back = reverse("console:webhook-deliveries", kwargs={"webhook_id": webhook.id}) + f"#delivery-{delivery.id}"
    if request.method == "GET":
        return redirect(back)
    delivery.webhook = webhook
    try:
        services.delivery_redeliver(delivery=delivery)
    except ComboError as exc:
        messages.error(request, f"Not redelivered: {exc.message}")
    else:
        messages.success(
            request, f"Sending the result again to {callback_host(webhook.callback_url)}, with a fresh retry schedule."
        )
    return redirect(back)
