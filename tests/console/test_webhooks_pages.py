"""Integrations → Webhooks pages, through Django's test client.

alice sees and changes only her webhooks; bob's answer 404 on every page.
The plain secret appears only in the response to a POST (create, reveal,
rotate), never in a GET page, and rotating keeps the previous secret valid
for the grace period, checked against the real events endpoint.
"""

from __future__ import annotations

import html
import json
import logging
import re
import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from django.utils import timezone

from agents import services as agent_services
from combo.errors import ComboError, ErrorCode
from integrations import examples, services, signing, ssrf, template, vault
from integrations.models import DeliveryAttempt, Webhook, WebhookDelivery
from tests.conftest import Api
from tests.integrations.conftest import allow_loopback, receiver, run_worker  # noqa: F401 (fixtures)

XSS = "<script>alert(1)</script>"
# Bob's agent or webhook by name, however the page escapes it. Not a bare "Bob": a random
# CSRF token or id in the page can hold those three letters.
BOBS = re.compile(r"Bob(&#x27;|&#39;|'|\\u0027)s")
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
WEBHOOKS = "/console/integrations/webhooks/"
EVENTS = "/v1/integrations/webhooks/{}/events"
PUBLIC_CALLBACK = "https://93.184.215.14/combo-results"  # a public address literal: no DNS needed
SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{43}")

# Every page of one webhook, as (path suffix, whether a POST to it changes something).
WEBHOOK_PAGES = ["", "settings/", "rotate/", "delete/", "deliveries/"]


def body(response) -> str:
    return response.content.decode()


@pytest.fixture
def hook(alice, alice_agent):
    """alice's webhook and its secret, made through the service."""
    return services.webhook_create(
        owner=alice.user, agent=alice_agent, name="PR reviews",
        question_template="Review this PR for me: {{ pull_request.title }}", callback_url=PUBLIC_CALLBACK,
    )


@pytest.fixture
def bob_hook(bob, bob_agent):
    return services.webhook_create(owner=bob.user, agent=bob_agent, name="Bob's hook")


def send_event(client, webhook_id, secret: str, payload=None, *, timestamped: bool = False):
    raw = json.dumps(payload or {"pull_request": {"title": "Fix the parser"}}).encode()
    signature = signing.sign_timestamped(secret, raw) if timestamped else signing.sign(secret, raw)
    return client.post(
        EVENTS.format(webhook_id), data=raw, content_type="application/json", HTTP_X_COMBO_SIGNATURE=signature
    )


def create_form(agent, **fields) -> dict:
    return {
        "form_token": fields.pop("form_token", ""), "name": "CI results", "agent": str(agent.id),
        "question_template": "", "callback_url": "", "enabled": "on", **fields,
    }


def fresh_token(client, path=WEBHOOKS + "new/") -> str:
    page = body(client.get(path))
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def field_errors(page: str, field: str) -> str:
    match = re.search(rf'<ul class="field-errors" id="id_{field}_error">(.*?)</ul>', page, re.S)
    return match.group(1) if match else ""


# --- Access ------------------------------------------------------------------------


def all_pages(webhook_id) -> list[str]:
    return [WEBHOOKS, WEBHOOKS + "new/"] + [f"{WEBHOOKS}{webhook_id}/{suffix}" for suffix in WEBHOOK_PAGES]


def test_every_page_renders_for_its_owner(alice_client, hook):
    for path in all_pages(hook.webhook.id):
        response = alice_client.get(path)
        assert response.status_code == 200, path
        assert "PR reviews" in body(response) or path.endswith("new/"), path


def test_every_page_needs_a_signed_in_user(client, hook):
    paths = all_pages(hook.webhook.id) + [
        f"{WEBHOOKS}{hook.webhook.id}/secret/", f"{WEBHOOKS}{hook.webhook.id}/deliveries/{uuid.uuid4()}/redeliver/",
    ]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/console/login/?next="), path
        response = client.post(path)
        assert response.status_code == 302 and response["Location"].startswith("/console/login/?next="), path
    assert Webhook.objects.filter(id=hook.webhook.id).exists()


@pytest.mark.parametrize("suffix", WEBHOOK_PAGES + ["secret/"])
def test_bobs_webhook_is_not_found_for_alice(alice_client, bob_hook, suffix):
    path = f"{WEBHOOKS}{bob_hook.webhook.id}/{suffix}"
    assert alice_client.get(path).status_code == 404
    posted = alice_client.post(path, {"name": "stolen", "agent": str(bob_hook.webhook.agent_id)})
    # Read-only pages refuse a POST for any id (405) before looking anything up.
    assert posted.status_code == (405 if suffix in ("", "deliveries/") else 404)
    assert bob_hook.secret not in body(posted)
    stored = Webhook.objects.get(id=bob_hook.webhook.id)
    assert stored.name == "Bob's hook" and vault.decrypt(stored.secret_encrypted) == bob_hook.secret


def test_bobs_deliveries_cannot_be_redelivered_by_alice(alice_client, client, bob_hook):
    send_event(client, bob_hook.webhook.id, bob_hook.secret, {"question": "hi"})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(id=delivery.id).update(status=WebhookDelivery.Status.SUCCEEDED)
    path = f"{WEBHOOKS}{bob_hook.webhook.id}/deliveries/{delivery.id}/redeliver/"
    assert alice_client.post(path).status_code == 404
    delivery.refresh_from_db()
    assert delivery.callback_generation == 0


def test_a_get_of_redeliver_goes_to_the_deliveries_page_and_sends_nothing(alice_client, client, hook):
    # As after signing in again from a form whose session had ended: no blank 405.
    send_event(client, hook.webhook.id, hook.secret, {"question": "hi"})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(id=delivery.id).update(status=WebhookDelivery.Status.SUCCEEDED)
    response = alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/deliveries/{delivery.id}/redeliver/")
    assert response.status_code == 302
    assert response["Location"] == f"{WEBHOOKS}{hook.webhook.id}/deliveries/#delivery-{delivery.id}"
    delivery.refresh_from_db()
    assert delivery.callback_generation == 0


def test_a_delivery_of_another_webhook_is_not_found_under_alices(alice_client, client, hook, bob_hook):
    send_event(client, bob_hook.webhook.id, bob_hook.secret, {"question": "hi"})
    delivery = WebhookDelivery.objects.get()
    path = f"{WEBHOOKS}{hook.webhook.id}/deliveries/{delivery.id}/redeliver/"
    assert alice_client.post(path).status_code == 404


def test_the_list_shows_alices_webhooks_and_not_bobs(alice_client, client, hook, bob_hook):
    send_event(client, hook.webhook.id, hook.secret)
    disabled = services.webhook_create(owner=hook.webhook.owner, agent=hook.webhook.agent, name="Paused", enabled=False)
    page = body(alice_client.get(WEBHOOKS))
    assert "PR reviews" in page and "Paused" in page and not BOBS.search(page)
    assert str(bob_hook.webhook.id) not in page
    row = re.search(r"<tr>\s*<td class=\"cell-strong\"><a href=\"[^\"]+\">PR reviews</a>.*?</tr>", page, re.S).group(0)
    assert "Alice&#x27;s helper" in row  # the agent
    assert "<code class=\"host\">93.184.215.14</code>" in row  # the callback host, not the whole URL
    assert "badge-active\">Enabled" in row and "badge-queued\">Queued" in row  # last delivery status
    assert "<time datetime=" in row
    assert re.search(r'class="row-dim">\s*<td class="cell-strong"><a[^>]*>Paused</a>', page)
    assert f'href="{WEBHOOKS}{disabled.webhook.id}/"' in page
    assert hook.secret not in page and disabled.secret not in page


def test_the_navigation_shows_integrations_and_marks_it_current(alice_client, hook):
    page = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/deliveries/"))
    nav = re.search(r'<nav class="mainnav".*?</nav>', page, re.S).group(0)
    assert re.search(r'<a href="/console/integrations/webhooks/" aria-current="page">Integrations</a>', nav)
    labels = re.findall(r">([^<>]+)</a>", nav)
    assert labels == ["Agents", "Files", "Personal settings", "Integrations", "API"]
    assert alice_client.get("/console/integrations/")["Location"] == WEBHOOKS


def test_an_empty_list_sends_to_agents_first_without_any(alice_client):
    page = body(alice_client.get(WEBHOOKS))
    assert "No webhooks yet" in page and "Create an agent" in page
    assert "Create an agent" in body(alice_client.get(WEBHOOKS + "new/"))


# --- Create: the secret once -----------------------------------------------------------


def test_creating_shows_the_secret_once(alice_client, alice, alice_agent, caplog):
    caplog.set_level(logging.DEBUG)
    form = alice_client.get(WEBHOOKS + "new/")
    assert form["Cache-Control"].startswith("max-age=0") or "no-store" in form["Cache-Control"]
    assert "{{ dotted.path }}" in body(form) and "{{ pull_request.title }}" in body(form)  # the template's help
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=token, question_template="Review {{ pull_request.title }}",
        callback_url=PUBLIC_CALLBACK, require_timestamp="on",
    ))
    assert response.status_code == 201 and "no-store" in response["Cache-Control"]
    page = body(response)
    webhook = Webhook.objects.get()
    secret = vault.decrypt(webhook.secret_encrypted)
    assert re.search(rf'<input id="secret-value"[^>]*value="{secret}"', page)
    assert page.count(secret) == 1
    assert "This page will not show it again" in page and 'data-copy="#secret-value"' in page
    assert (webhook.owner, webhook.agent, webhook.name, webhook.question_template, webhook.callback_url) == (
        alice.user, alice_agent, "CI results", "Review {{ pull_request.title }}", PUBLIC_CALLBACK,
    )
    assert webhook.enabled and webhook.require_timestamp and webhook.secret_hint == secret[-4:]
    # The events URL and the signing example come with it.
    assert f"http://testserver/v1/integrations/webhooks/{webhook.id}/events" in page

    # Every GET page afterwards shows only the hint.
    for path in all_pages(webhook.id):
        later = body(alice_client.get(path))
        assert secret not in later and not SECRET.search(later), path
    assert f"whsec_…{secret[-4:]}" in body(alice_client.get(f"{WEBHOOKS}{webhook.id}/"))

    # Sending the same form again (a reload) makes no second webhook and shows no secret.
    again = alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token), follow=True)
    assert Webhook.objects.count() == 1
    assert "already sent" in body(again) and secret not in body(again)
    assert secret not in caplog.text


def rewind_form_tokens(client, tokens) -> None:
    """The session as a second copy of a form read it: before the first copy had spent its token."""
    session = client.session
    session["webhook_form_tokens"] = tokens
    session.save()


def test_two_copies_of_the_create_form_sent_at_once_make_one_webhook(alice_client, alice_agent):
    token = fresh_token(alice_client)
    before = alice_client.session["webhook_form_tokens"]
    assert alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token)).status_code == 201
    rewind_form_tokens(alice_client, before)
    again = alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token))
    assert again.status_code == 302 and Webhook.objects.count() == 1


def test_two_copies_of_the_rotate_form_sent_at_once_rotate_once(alice_client, hook):
    path = f"{WEBHOOKS}{hook.webhook.id}/rotate/"
    token = fresh_token(alice_client, path)
    before = alice_client.session["webhook_form_tokens"]
    assert alice_client.post(path, {"form_token": token}).status_code == 200
    rotated = vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted)
    rewind_form_tokens(alice_client, before)
    again = alice_client.post(path, {"form_token": token})
    assert again.status_code == 302
    stored = Webhook.objects.get(id=hook.webhook.id)
    # Not rotated twice: the first new secret is current, and the original still verifies (grace period).
    assert vault.decrypt(stored.secret_encrypted) == rotated
    assert vault.decrypt(stored.previous_secret_encrypted) == hook.secret


def test_a_create_or_rotate_form_that_failed_on_the_server_may_be_sent_again(alice_client, alice_agent, hook,
                                                                           monkeypatch):
    # The database went away while the webhook was being made or its secret rotated: nothing was
    # done, so the same form sent again does it, rather than saying it was already sent.
    def broken(**fields):
        raise RuntimeError("the database went away")

    token = fresh_token(alice_client)
    real_create = services.webhook_create
    monkeypatch.setattr(services, "webhook_create", broken)
    with pytest.raises(RuntimeError):
        alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token))
    monkeypatch.setattr(services, "webhook_create", real_create)
    before = Webhook.objects.count()
    assert alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token)).status_code == 201
    assert Webhook.objects.count() == before + 1

    path = f"{WEBHOOKS}{hook.webhook.id}/rotate/"
    token = fresh_token(alice_client, path)
    real_rotate = services.webhook_rotate_secret
    monkeypatch.setattr(services, "webhook_rotate_secret", broken)
    with pytest.raises(RuntimeError):
        alice_client.post(path, {"form_token": token})
    assert vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted) == hook.secret
    monkeypatch.setattr(services, "webhook_rotate_secret", real_rotate)
    assert alice_client.post(path, {"form_token": token}).status_code == 200
    assert vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted) != hook.secret


def test_a_repeated_create_form_says_so_on_the_list(alice_client, alice_agent):
    # A reload also says where the secret is now; a copy sent at the same moment, only where the webhook is.
    token = fresh_token(alice_client)
    before = alice_client.session["webhook_form_tokens"]
    assert alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token)).status_code == 201
    reload = alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token), follow=True)
    assert reload.redirect_chain == [(WEBHOOKS, 302)]
    assert (
        '<p class="flash flash-info">That form was already sent, and its webhook is in the list below. '
        "Its secret was shown once; open the webhook to reveal it.</p>"
    ) in body(reload)
    rewind_form_tokens(alice_client, before)
    at_once = alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token), follow=True)
    assert at_once.redirect_chain == [(WEBHOOKS, 302)]
    assert (
        '<p class="flash flash-info">That form was already sent, and its webhook is in the list below.</p>'
    ) in body(at_once)
    # A made-up token creates nothing either.
    made_up = alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token="made-up"))
    assert made_up.status_code == 302 and made_up["Location"] == WEBHOOKS
    assert Webhook.objects.count() == 1


def test_a_repeated_rotate_form_says_so_on_the_webhooks_page(alice_client, hook):
    page = f"{WEBHOOKS}{hook.webhook.id}/"
    path = page + "rotate/"
    token = fresh_token(alice_client, path)
    before = alice_client.session["webhook_form_tokens"]
    assert alice_client.post(path, {"form_token": token}).status_code == 200
    rotated = vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted)
    reload = alice_client.post(path, {"form_token": token}, follow=True)
    assert reload.redirect_chain == [(page, 302)]
    assert (
        '<p class="flash flash-info">That rotation was already done; the secret was not rotated again. '
        "Use Reveal secret to see the current one.</p>"
    ) in body(reload)
    rewind_form_tokens(alice_client, before)
    at_once = alice_client.post(path, {"form_token": token}, follow=True)
    assert at_once.redirect_chain == [(page, 302)]
    assert (
        '<p class="flash flash-info">That rotation was already done; the secret was not rotated again.</p>'
    ) in body(at_once)
    # A made-up token rotates nothing either.
    made_up = alice_client.post(path, {"form_token": "made-up"})
    assert made_up.status_code == 302 and made_up["Location"] == page
    assert vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted) == rotated


def test_the_create_form_refuses_a_post_without_the_csrf_token(alice, alice_agent):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    token = fresh_token(strict)
    response = strict.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token))
    assert response.status_code == 403 and not Webhook.objects.exists()


def test_form_errors_appear_next_to_their_fields(alice_client, alice_agent, bob_agent):
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(bob_agent, form_token=token, name=" "))
    page = body(response)
    assert response.status_code == 400
    assert "Give the webhook a name" in field_errors(page, "name") or "required" in field_errors(page, "name")
    assert "Select a valid choice" in field_errors(page, "agent")
    assert not BOBS.search(page)  # bob's agent is not among the choices

    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=token, question_template="{{ title|upper }} and {{ 7*7 }}",
    ))
    page = body(response)
    assert response.status_code == 400
    assert "Placeholders must be dotted paths" in field_errors(page, "question_template")
    assert "{{ title|upper }}" in field_errors(page, "question_template")
    assert 'aria-invalid="true"' in page
    assert not Webhook.objects.exists()
    # The same token still works once the form is right.
    assert alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token)).status_code == 201


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:8080/hook", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
    ("http://10.1.2.3/hook", "a private address"),
    ("http://[::ffff:192.168.0.1]/hook", "a private address (embedded in IPv6)"),
])
def test_the_ssrf_guard_refusal_is_shown_next_to_the_callback_field(alice_client, alice_agent, url, says):
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token, callback_url=url))
    page = body(response)
    assert response.status_code == 400
    errors = field_errors(page, "callback_url")
    assert f"Callback URLs may not point to {says}" in errors and "COMBO_WEBHOOK_ALLOWED_HOSTS" in errors
    assert re.search(r'<input[^>]*name="callback_url"[^>]*aria-invalid="true"', page)
    assert f'value="{url}"' in page  # kept in the field to correct
    assert not Webhook.objects.exists()


def test_every_refused_field_is_shown_at_once(alice_client, alice_agent):
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=token, question_template="{{ a|b }}", callback_url="http://10.0.0.1/x",
    ))
    page = body(response)
    assert "Placeholders must be dotted paths" in field_errors(page, "question_template")
    assert "a private address" in field_errors(page, "callback_url")


def test_a_refusal_from_the_service_lands_next_to_its_field(alice_client, alice_agent, monkeypatch):
    """The service has the last word (the form's checks may pass and the service's still refuse)."""
    def refuse(**fields):
        raise ssrf.CallbackRefused("Callback URLs may not point to a loopback address: rebound.example (127.0.0.1).")

    monkeypatch.setattr(services, "webhook_create", refuse)
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=token, callback_url=PUBLIC_CALLBACK,
    ))
    assert response.status_code == 400
    assert "rebound.example (127.0.0.1)" in field_errors(body(response), "callback_url")
    # The token was not spent: the corrected form can still be sent.
    monkeypatch.undo()
    assert alice_client.post(WEBHOOKS + "new/", create_form(alice_agent, form_token=token)).status_code == 201


def test_a_refusal_without_a_field_is_shown_above_the_form(alice_client, hook, monkeypatch):
    def refuse(**fields):
        raise ComboError(ErrorCode.CONFLICT, "Something else went wrong.")

    monkeypatch.setattr(services, "webhook_update", refuse)
    response = alice_client.post(f"{WEBHOOKS}{hook.webhook.id}/settings/", {
        "name": "Renamed", "agent": str(hook.webhook.agent_id), "callback_url": PUBLIC_CALLBACK, "enabled": "on",
        "question_template": hook.webhook.question_template,
    })
    assert response.status_code == 400
    assert re.search(r'<div class="form-errors" role="alert">\s*<p>Something else went wrong.</p>', body(response))


def test_a_callback_url_that_is_not_http_is_refused_next_to_its_field(alice_client, alice_agent):
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=token, callback_url="ftp://files.example.com/x",
    ))
    assert response.status_code == 400
    assert "must start with http:// or https://" in field_errors(body(response), "callback_url")


def test_an_allowlisted_host_is_accepted(alice_client, alice_agent, settings):
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    token = fresh_token(alice_client)
    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=token, callback_url="http://127.0.0.1:9000/hook",
    ))
    assert response.status_code == 201
    assert Webhook.objects.get().callback_url == "http://127.0.0.1:9000/hook"


# --- Edit ------------------------------------------------------------------------------


def test_editing_changes_agent_callback_enabled_and_template(alice_client, alice, hook):
    other = agent_services.agent_create(owner=alice.user, name="Second agent")
    path = f"{WEBHOOKS}{hook.webhook.id}/settings/"
    page = body(alice_client.get(path))
    assert 'value="PR reviews"' in page and "Review this PR for me: {{ pull_request.title }}" in page
    assert f'<option value="{other.id}">Second agent</option>' in page
    response = alice_client.post(path, {
        "name": "PR reviews", "agent": str(other.id), "question_template": "Summarise {{ commits.0.message }}",
        "callback_url": "", "require_timestamp": "on",
    })
    assert response.status_code == 302 and response["Location"] == path
    stored = Webhook.objects.get(id=hook.webhook.id)
    assert (stored.agent, stored.enabled, stored.callback_url, stored.question_template, stored.require_timestamp) == (
        other, False, "", "Summarise {{ commits.0.message }}", True,
    )
    assert vault.decrypt(stored.secret_encrypted) == hook.secret  # editing never touches the secret
    assert "Saved" in body(alice_client.get(path))


def test_an_edit_refused_by_the_ssrf_guard_changes_nothing(alice_client, hook):
    path = f"{WEBHOOKS}{hook.webhook.id}/settings/"
    response = alice_client.post(path, {
        "name": "Renamed", "agent": str(hook.webhook.agent_id), "question_template": "",
        "callback_url": "http://127.0.0.1/steal", "enabled": "on",
    })
    page = body(response)
    assert response.status_code == 400
    assert "a loopback address" in field_errors(page, "callback_url")
    assert 'value="http://127.0.0.1/steal"' in page  # kept in the field to correct
    stored = Webhook.objects.get(id=hook.webhook.id)
    assert (stored.name, stored.callback_url) == ("PR reviews", PUBLIC_CALLBACK)


def test_an_unchanged_callback_url_is_not_vetted_again_on_save(alice_client, alice, alice_agent, settings):
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    made = services.webhook_create(
        owner=alice.user, agent=alice_agent, name="On premises", callback_url="http://127.0.0.1:9000/hook",
    )
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = []  # the operator narrowed the allowlist since
    path = f"{WEBHOOKS}{made.webhook.id}/settings/"
    response = alice_client.post(path, {
        "name": "Renamed", "agent": str(alice_agent.id), "callback_url": "http://127.0.0.1:9000/hook", "enabled": "on",
    })
    assert response.status_code == 302
    assert Webhook.objects.get(id=made.webhook.id).name == "Renamed"
    # Changing it is vetted.
    response = alice_client.post(path, {
        "name": "Renamed", "agent": str(alice_agent.id), "callback_url": "http://127.0.0.1:9001/hook", "enabled": "on",
    })
    assert response.status_code == 400 and "a loopback address" in field_errors(body(response), "callback_url")


MULTILINE = "Review this PR:\n{{ pull_request.title }}\n\n{{ pull_request.body }}\n"


def test_a_multiline_template_is_stored_with_lf_line_endings(alice_client, alice_agent):
    # Browsers send a textarea's lines with CRLF.
    response = alice_client.post(WEBHOOKS + "new/", create_form(
        alice_agent, form_token=fresh_token(alice_client), question_template=MULTILINE.replace("\n", "\r\n"),
    ))
    assert response.status_code == 201
    assert Webhook.objects.get().question_template == MULTILINE


def test_saving_an_unchanged_multiline_template_changes_nothing(alice_client, alice, alice_agent):
    made = services.webhook_create(owner=alice.user, agent=alice_agent, name="Notes", question_template=MULTILINE)
    path = f"{WEBHOOKS}{made.webhook.id}/settings/"
    form = {"name": "Notes", "agent": str(alice_agent.id), "question_template": MULTILINE.replace("\n", "\r\n"),
            "callback_url": "", "enabled": "on"}
    response = alice_client.post(path, form, follow=True)
    assert "Nothing to save: no field changed." in body(response)
    assert Webhook.objects.get(id=made.webhook.id).question_template == MULTILINE
    # The same for a template stored with CRLF through the API (which keeps what JSON gives):
    # the console cannot tell the two apart, so it leaves it as it is.
    crlf = MULTILINE.replace("\n", "\r\n")
    services.webhook_update(webhook=made.webhook, question_template=crlf)
    response = alice_client.post(path, form, follow=True)
    assert "Nothing to save: no field changed." in body(response)
    assert Webhook.objects.get(id=made.webhook.id).question_template == crlf
    # An edit to it is stored with LF.
    response = alice_client.post(path, {**form, "question_template": "One\r\nTwo"})
    assert response.status_code == 302 and Webhook.objects.get(id=made.webhook.id).question_template == "One\nTwo"


def test_an_edit_refuses_another_users_agent(alice_client, hook, bob_agent):
    path = f"{WEBHOOKS}{hook.webhook.id}/settings/"
    response = alice_client.post(path, {"name": "x", "agent": str(bob_agent.id), "enabled": "on"})
    assert response.status_code == 400 and "Select a valid choice" in field_errors(body(response), "agent")
    assert Webhook.objects.get(id=hook.webhook.id).agent_id == hook.webhook.agent_id


def test_editing_refuses_a_post_without_the_csrf_token(alice, hook):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    response = strict.post(f"{WEBHOOKS}{hook.webhook.id}/settings/", {"name": "x", "agent": str(hook.webhook.agent_id)})
    assert response.status_code == 403 and Webhook.objects.get(id=hook.webhook.id).name == "PR reviews"


# --- Reveal ----------------------------------------------------------------------------


def test_the_secret_is_revealed_only_by_a_post(alice_client, hook, caplog):
    caplog.set_level(logging.DEBUG)
    path = f"{WEBHOOKS}{hook.webhook.id}/secret/"
    overview = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/"))
    assert hook.secret not in overview
    assert re.search(rf'<form method="post" action="{path}">\s*<input type="hidden" name="csrfmiddlewaretoken"', overview)

    got = alice_client.get(path)
    assert got.status_code == 302 and got["Location"] == f"{WEBHOOKS}{hook.webhook.id}/"
    assert hook.secret not in body(alice_client.get(path, follow=True))

    revealed = alice_client.post(path)
    assert revealed.status_code == 200 and "no-store" in revealed["Cache-Control"]
    assert re.search(rf'<input id="secret-value"[^>]*value="{hook.secret}"', body(revealed))
    assert "hidden again when you leave this page" in body(revealed)
    assert hook.secret not in body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/"))
    assert hook.secret not in caplog.text
    assert f"webhook {hook.webhook.id}: secret revealed" in caplog.text


def test_revealing_needs_the_csrf_token(alice, hook):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    response = strict.post(f"{WEBHOOKS}{hook.webhook.id}/secret/")
    assert response.status_code == 403 and hook.secret not in body(response)


def test_an_unreadable_secret_says_to_rotate(alice_client, hook):
    # Encrypted under a key this server does not have (as after losing COMBO_WEBHOOK_ENCRYPTION_KEY).
    foreign = Fernet(Fernet.generate_key()).encrypt(b"whsec_lost").decode()
    Webhook.objects.filter(id=hook.webhook.id).update(secret_encrypted=foreign)
    response = alice_client.post(f"{WEBHOOKS}{hook.webhook.id}/secret/", follow=True)
    assert "cannot be decrypted" in body(response) and "Rotate the secret" in body(response)


# --- Rotate ----------------------------------------------------------------------------


def test_rotating_asks_first_and_explains_the_grace_period(alice_client, hook, settings):
    settings.COMBO_WEBHOOK_SECRET_GRACE_HOURS = 6
    page = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/rotate/"))
    assert "keeps verifying events for 6 hours" in page and "COMBO_WEBHOOK_SECRET_GRACE_HOURS" in page
    assert hook.secret not in page
    assert vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted) == hook.secret


def test_rotating_changes_the_secret_and_keeps_the_old_one_valid(alice_client, client, hook, caplog):
    caplog.set_level(logging.DEBUG)
    webhook_id = hook.webhook.id
    path = f"{WEBHOOKS}{webhook_id}/rotate/"
    token = fresh_token(alice_client, path)
    response = alice_client.post(path, {"form_token": token})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    stored = Webhook.objects.get(id=webhook_id)
    new_secret = vault.decrypt(stored.secret_encrypted)
    assert new_secret != hook.secret and SECRET.fullmatch(new_secret)
    assert re.search(rf'<input id="secret-value"[^>]*value="{new_secret}"', body(response))
    assert "The old secret keeps verifying events until" in body(response)
    assert stored.previous_secret_valid()
    assert vault.decrypt(stored.previous_secret_encrypted) == hook.secret
    assert timedelta(hours=23) < stored.previous_secret_expires_at - timezone.now() <= timedelta(hours=24)

    # The events endpoint takes both secrets (the old one in its grace period), and nothing else.
    old = send_event(client, webhook_id, hook.secret)
    new = send_event(client, webhook_id, new_secret, timestamped=True)
    wrong = send_event(client, webhook_id, "whsec_" + "x" * 43)
    assert (old.status_code, new.status_code, wrong.status_code) == (202, 202, 401)
    assert wrong.json()["code"] == 10142
    by_previous = WebhookDelivery.objects.get(id=old.json()["data"]["delivery_id"])
    assert by_previous.signed_with_previous_secret

    # Sending the rotate form again (a reload) does not rotate again: the old secret stays valid.
    again = alice_client.post(path, {"form_token": token}, follow=True)
    assert "already done" in body(again) and new_secret not in body(again)
    stored.refresh_from_db()
    assert vault.decrypt(stored.secret_encrypted) == new_secret
    assert vault.decrypt(stored.previous_secret_encrypted) == hook.secret
    assert new_secret not in caplog.text and hook.secret not in caplog.text

    # The overview says until when the previous secret works, and the deliveries page who used it.
    assert "Previous secret" in body(alice_client.get(f"{WEBHOOKS}{webhook_id}/"))
    assert "previous secret</span>" in body(alice_client.get(f"{WEBHOOKS}{webhook_id}/deliveries/"))


def test_rotating_can_retire_a_leaked_secret_at_once(alice_client, client, hook):
    path = f"{WEBHOOKS}{hook.webhook.id}/rotate/"
    response = alice_client.post(path, {"form_token": fresh_token(alice_client, path), "retire_now": "on"})
    assert "The old secret was retired at once" in body(response)
    new_secret = vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted)
    assert send_event(client, hook.webhook.id, hook.secret).status_code == 401
    assert send_event(client, hook.webhook.id, new_secret).status_code == 202


def test_rotating_refuses_a_post_without_the_csrf_token(alice, hook):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    path = f"{WEBHOOKS}{hook.webhook.id}/rotate/"
    response = strict.post(path, {"form_token": fresh_token(strict, path)})
    assert response.status_code == 403
    assert vault.decrypt(Webhook.objects.get(id=hook.webhook.id).secret_encrypted) == hook.secret


# --- Delete ----------------------------------------------------------------------------


def test_deleting_asks_first_and_only_a_post_deletes(alice_client, client, hook):
    send_event(client, hook.webhook.id, hook.secret)
    path = f"{WEBHOOKS}{hook.webhook.id}/delete/"
    confirm = body(alice_client.get(path))
    assert "1 delivery" in confirm and "cannot be undone" in confirm
    assert Webhook.objects.filter(id=hook.webhook.id).exists()
    response = alice_client.post(path)
    assert response.status_code == 302 and response["Location"] == WEBHOOKS
    assert not Webhook.objects.filter(id=hook.webhook.id).exists()
    assert send_event(client, hook.webhook.id, hook.secret).status_code == 404


def test_deleting_refuses_a_post_without_the_csrf_token(alice, hook):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    assert strict.post(f"{WEBHOOKS}{hook.webhook.id}/delete/").status_code == 403
    assert Webhook.objects.filter(id=hook.webhook.id).exists()


# --- Deliveries ------------------------------------------------------------------------


# The in-process worker opens connections of its own: no test-wide transaction (PostgreSQL's pool).
@pytest.mark.django_db(transaction=True)
def test_deliveries_show_status_reason_timings_and_attempts(
    alice_client, client, alice, alice_agent, receiver, allow_loopback,  # noqa: F811
):
    receiver.statuses = [503, 200]
    made = services.webhook_create(
        owner=alice.user, agent=alice_agent, name="Results", callback_url=receiver.url,
    )
    webhook_id = made.webhook.id
    accepted = send_event(client, webhook_id, made.secret, {"question": "Is the build green?"})
    assert accepted.status_code == 202
    refused = client.post(
        EVENTS.format(webhook_id), data=b'{"question": "x"}', content_type="application/json",
        HTTP_X_COMBO_SIGNATURE=signing.sign("whsec_wrong", b'{"question": "x"}'),
    )
    assert refused.status_code == 401
    run_worker()  # the agent answers, the result is posted: 503 (retried), then 200

    page = body(alice_client.get(f"{WEBHOOKS}{webhook_id}/deliveries/"))
    delivery = WebhookDelivery.objects.get(id=accepted.json()["data"]["delivery_id"])
    assert delivery.status == "succeeded" and delivery.callback_status == "delivered"
    item = re.search(rf'<li class="delivery" id="delivery-{delivery.id}">.*?</li>\s*(?=<li|</ol>)', page, re.S).group(0)
    assert "badge-succeeded\">Succeeded" in item and "Is the build green?" in item
    assert re.search(r"<dt>Ran</dt><dd>\d+ ms</dd>", item) and "<dt>Received</dt>" in item
    assert "badge-delivered\">Delivered" in item
    attempts = re.findall(r"<tr>\s*<td class=\"num\">(\d+)</td>.*?<code>(\d+)</code>.*?(\d+) ms.*?badge-(\w+)", item, re.S)
    assert [(n, code, outcome) for n, code, _, outcome in attempts] == [("1", "503", "retry"), ("2", "200", "delivered")]
    assert "HTTP 503" in item or "503" in item
    assert "Redeliver" in item

    rejected = WebhookDelivery.objects.get(status="rejected")
    item = re.search(rf'<li class="delivery" id="delivery-{rejected.id}">.*?</li>\s*(?=<li|</ol>)', page, re.S).group(0)
    assert "badge-rejected\">Rejected" in item and "<code>10142</code>" in item
    assert "Redeliver" not in item  # nothing ran, so nothing to send

    # Only rejected ones, through the filter.
    filtered = body(alice_client.get(f"{WEBHOOKS}{webhook_id}/deliveries/?status=rejected"))
    assert f"delivery-{rejected.id}" in filtered and f"delivery-{delivery.id}" not in filtered


# The in-process worker opens connections of its own: no test-wide transaction (PostgreSQL's pool).
@pytest.mark.django_db(transaction=True)
def test_redeliver_sends_the_result_again(alice_client, client, alice, alice_agent, receiver, allow_loopback):  # noqa: F811
    made = services.webhook_create(owner=alice.user, agent=alice_agent, name="Results", callback_url=receiver.url)
    accepted = send_event(client, made.webhook.id, made.secret, {"question": "Again?"})
    run_worker()
    delivery_id = accepted.json()["data"]["delivery_id"]
    path = f"{WEBHOOKS}{made.webhook.id}/deliveries/{delivery_id}/redeliver/"
    assert alice_client.get(path).status_code == 302  # only a POST redelivers

    response = alice_client.post(path)
    assert response.status_code == 302
    assert response["Location"] == f"{WEBHOOKS}{made.webhook.id}/deliveries/#delivery-{delivery_id}"
    run_worker()
    assert len(receiver.received) == 2
    attempts = list(DeliveryAttempt.objects.filter(delivery_id=delivery_id).order_by("number"))
    assert [(a.number, a.redelivery, a.status_code) for a in attempts] == [(1, False, 200), (2, True, 200)]
    page = body(alice_client.get(f"{WEBHOOKS}{made.webhook.id}/deliveries/"))
    assert "Sending the result again to 127.0.0.1" in page and "redelivery</span>" in page


def test_redeliver_refuses_an_unfinished_delivery_and_says_why(alice_client, client, hook):
    accepted = send_event(client, hook.webhook.id, hook.secret)  # queued: no worker ran
    delivery_id = accepted.json()["data"]["delivery_id"]
    page = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/deliveries/"))
    assert "badge-queued\">Queued" in page and "Redeliver" not in page
    response = alice_client.post(f"{WEBHOOKS}{hook.webhook.id}/deliveries/{delivery_id}/redeliver/", follow=True)
    assert "Not redelivered: Only a finished delivery can be redelivered; this one is queued." in body(response)
    assert WebhookDelivery.objects.get(id=delivery_id).callback_generation == 0


def test_redeliver_needs_the_csrf_token(alice, client, hook):
    send_event(client, hook.webhook.id, hook.secret)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(id=delivery.id).update(status=WebhookDelivery.Status.SUCCEEDED)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    assert strict.post(f"{WEBHOOKS}{hook.webhook.id}/deliveries/{delivery.id}/redeliver/").status_code == 403
    assert WebhookDelivery.objects.get(id=delivery.id).callback_generation == 0


def test_an_empty_deliveries_page_points_to_the_example(alice_client, hook):
    page = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/deliveries/"))
    assert "No event received yet" in page


# --- The events URL and the signing example ----------------------------------------------


def test_the_overview_shows_the_events_url_and_a_signing_example(alice_client, hook):
    page = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/"))
    url = f"http://testserver/v1/integrations/webhooks/{hook.webhook.id}/events"
    assert f'<input id="events-url" class="mono" type="text" value="{url}"' in page
    sample = re.search(r'<pre id="signing-sample"><code>(.*?)</code></pre>', page, re.S).group(1)
    assert "openssl dgst -sha256 -hmac &quot;$COMBO_WEBHOOK_SECRET&quot;" in sample
    assert f"curl -s &#x27;{url}&#x27;" in sample and "--data-binary &quot;$BODY&quot;" in sample
    # The sample event fills this webhook's template.
    assert "BODY=&#x27;{&quot;pull_request&quot;: {&quot;title&quot;: &quot;example title&quot;}}&#x27;" in sample


def test_the_example_uses_the_timestamped_form_when_the_webhook_requires_it(alice_client, hook):
    services.webhook_update(webhook=hook.webhook, require_timestamp=True)
    page = body(alice_client.get(f"{WEBHOOKS}{hook.webhook.id}/"))
    assert "T=$(date +%s)" in page and "t=$T,sha256=" in page


@pytest.mark.parametrize("question_template", [
    "", "Review {{ pull_request.title }}\n\n{{ pull_request.body }}", "{{ commits.2.message }} by {{ commits.0.author.name }}",
    "{{ a }} then {{ a.b }}", "Static text only",
])
def test_the_sample_event_asks_a_question(question_template):
    event = examples.sample_event(question_template)
    assert template.question_for(question_template, event)
    for path in template.placeholder_paths(question_template)[:1]:
        assert template.lookup(event, path) is not None


# --- Escaping and the page policy ----------------------------------------------------------


def test_names_and_texts_are_escaped_everywhere(alice_client, client, alice):
    agent = agent_services.agent_create(owner=alice.user, name=XSS)
    made = services.webhook_create(owner=alice.user, agent=agent, name=XSS, question_template=XSS + " {{ x }}")
    send_event(client, made.webhook.id, made.secret, {"x": XSS})
    paths = [WEBHOOKS] + [f"{WEBHOOKS}{made.webhook.id}/{suffix}" for suffix in WEBHOOK_PAGES]
    for path in paths:
        page = body(alice_client.get(path))
        assert XSS not in page, path
        assert XSS_ESCAPED in page, path
    revealed = body(alice_client.post(f"{WEBHOOKS}{made.webhook.id}/secret/"))
    assert XSS not in revealed and XSS_ESCAPED in revealed


@pytest.mark.parametrize("suffix", [None, "new/"] + WEBHOOK_PAGES)
def test_pages_need_no_inline_script_or_style(alice_client, hook, suffix):
    path = WEBHOOKS if suffix is None else (WEBHOOKS + suffix if suffix == "new/" else f"{WEBHOOKS}{hook.webhook.id}/{suffix}")
    response = alice_client.get(path)
    page = body(response)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    for attributes, content in re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S):
        assert 'src="/' in attributes and content.strip() == ""
    assert "<style" not in page and not re.search(r"\sstyle=", page) and not re.search(r"\son[a-z]+=", page)


# --- Edits over a change made meanwhile ------------------------------------------------


def settings_form(client, webhook) -> dict:
    """The settings page's form as a browser sends it unchanged (checked boxes as "on")."""
    page = body(client.get(f"{WEBHOOKS}{webhook.id}/settings/"))
    form = re.search(r'<form method="post"[^>]*class="webhook-form".*?</form>', page, re.S).group(0)
    fields = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag).group(1)
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                fields[name] = "on"
        else:
            fields[name] = html.unescape(re.search(r'value="([^"]*)"', tag).group(1)) if "value=" in tag else ""
    fields.update({name: html.unescape(text) for name, text in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>\n?(.*?)</textarea>', form, re.S)})
    for name, select in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        fields[name] = re.search(r'<option value="([^"]*)" selected>', select).group(1)
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def test_a_webhook_edit_over_an_api_change_made_meanwhile_is_refused(alice_client, alice, hook):
    webhook = hook.webhook
    path = f"{WEBHOOKS}{webhook.id}/settings/"
    form = settings_form(alice_client, webhook)
    assert form["edit_version"] and form["name"] == "PR reviews" and form["enabled"] == "on"
    # Meanwhile the API disables the webhook.
    status, _, _ = Api(Client()).patch(f"/v1/integrations/webhooks/{webhook.id}", {"enabled": False}, auth=alice.key_auth)
    assert status == 200
    response = alice_client.post(path, {**form, "question_template": "Summarise {{ commits.0.message }}"})
    page = body(response)
    assert response.status_code == 409
    assert "This webhook was changed since you opened this page: Enabled. Nothing was saved." in page
    assert "Changed since you opened this page" in field_errors(page, "enabled")
    assert "Summarise {{ commits.0.message }}" in page  # the input is kept
    saved = re.search(r'<section class="callout callout-warning edit-conflict".*?</section>', page, re.S).group(0)
    assert "<dt>Enabled</dt>" in saved and "No" in saved
    stored = Webhook.objects.get(id=webhook.id)
    assert (stored.enabled, stored.question_template) == (False, "Review this PR for me: {{ pull_request.title }}")
    # After a reload the same edit saves, over the webhook as it is now.
    fresh = settings_form(alice_client, webhook)
    assert "enabled" not in fresh
    response = alice_client.post(path, {**fresh, "question_template": "Summarise {{ commits.0.message }}"})
    assert response.status_code == 302
    stored = Webhook.objects.get(id=webhook.id)
    assert (stored.enabled, stored.question_template) == (False, "Summarise {{ commits.0.message }}")


def test_rotating_the_secret_meanwhile_does_not_block_a_webhook_edit(alice_client, hook):
    webhook = hook.webhook
    form = settings_form(alice_client, webhook)
    services.webhook_rotate_secret(webhook=webhook)
    response = alice_client.post(f"{WEBHOOKS}{webhook.id}/settings/", {**form, "name": "Renamed"})
    assert response.status_code == 302
    assert Webhook.objects.get(id=webhook.id).name == "Renamed"
