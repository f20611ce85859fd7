"""/v1/integrations/webhooks: create, list, read, update, delete, rotate-secret; owner-scoped."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import vault
from integrations.models import Webhook

WEBHOOKS = "/v1/integrations/webhooks"


def test_it_creates_a_webhook_and_shows_the_secret_once(api, alice, alice_agent):
    status, body, _ = api.post(
        WEBHOOKS,
        {"name": "PR reviews", "agent_id": str(alice_agent.id), "question_template": "Review {{ pull_request.title }}"},
        auth=alice.key_auth,
    )
    assert status == 201 and body["code"] == 0
    data = body["data"]
    secret = data["secret"]
    assert secret.startswith("whsec_") and len(secret) >= 6 + 43  # 32 random bytes, base64url
    assert data["secret_hint"] == secret[-4:]
    assert data["enabled"] is True and data["require_timestamp"] is False and data["callback_url"] == ""
    assert data["events_url"] == f"http://testserver/v1/integrations/webhooks/{data['id']}/events"

    stored = Webhook.objects.get(id=data["id"])
    assert stored.owner == alice.user and stored.agent == alice_agent
    # Encrypted at rest: the plain secret is nowhere in the row, yet it decrypts.
    assert secret not in stored.secret_encrypted and vault.decrypt(stored.secret_encrypted) == secret

    status, read, _ = api.get(f"{WEBHOOKS}/{data['id']}", auth=alice.key_auth)
    assert status == 200 and "secret" not in read["data"] and read["data"]["secret_hint"] == secret[-4:]
    status, listed, _ = api.get(WEBHOOKS, auth=alice.jwt_auth)
    assert [item["id"] for item in listed["data"]["items"]] == [data["id"]]
    assert listed["data"]["next_cursor"] is None
    assert secret not in str(listed) and secret not in str(read)


def test_two_webhooks_get_different_random_ids_and_secrets(make_webhook):
    one, two = make_webhook(), make_webhook()
    assert one.id != two.id and one.secret != two.secret


def test_it_refuses_unknown_fields_and_a_missing_name(api, alice, alice_agent):
    status, body, _ = api.post(WEBHOOKS, {"name": "x", "agent_id": str(alice_agent.id), "secret": "mine"}, auth=alice.key_auth)
    assert status == 400 and body["code"] == 10001 and body["data"]["errors"] == {"secret": ["Unknown field."]}
    status, body, _ = api.post(WEBHOOKS, {"agent_id": str(alice_agent.id)}, auth=alice.key_auth)
    assert status == 400 and body["code"] == 10001 and set(body["data"]["errors"]) == {"name"}
    assert Webhook.objects.count() == 0


def test_it_refuses_a_template_with_code_like_placeholders(api, alice, alice_agent):
    status, body, _ = api.post(
        WEBHOOKS,
        {"name": "x", "agent_id": str(alice_agent.id), "question_template": "{{ title|upper }} {{ 7*7 }}"},
        auth=alice.key_auth,
    )
    assert status == 400 and body["code"] == 10001
    assert "{{ title|upper }}" in body["data"]["errors"]["question_template"][0]
    assert Webhook.objects.count() == 0


def test_it_updates_with_patch(make_webhook, api, alice, alice_agent):
    hook = make_webhook()
    other = type(alice_agent).objects.create(owner=alice.user, name="Second")
    status, body, _ = api.patch(
        f"{WEBHOOKS}/{hook.id}",
        {"name": "Renamed", "enabled": False, "require_timestamp": True, "agent_id": str(other.id)},
        auth=alice.key_auth,
    )
    assert status == 200 and body["data"]["name"] == "Renamed" and body["data"]["agent_id"] == str(other.id)
    assert "secret" not in body["data"]
    stored = Webhook.objects.get(id=hook.id)
    assert (stored.name, stored.enabled, stored.require_timestamp, stored.agent_id) == ("Renamed", False, True, other.id)


def test_the_secret_cannot_be_patched(make_webhook, api, alice):
    hook = make_webhook()
    before = Webhook.objects.get(id=hook.id).secret_encrypted
    status, body, _ = api.patch(f"{WEBHOOKS}/{hook.id}", {"secret": "whsec_mine"}, auth=alice.key_auth)
    assert status == 400 and body["data"]["errors"] == {"secret": ["Unknown field."]}
    assert Webhook.objects.get(id=hook.id).secret_encrypted == before


def test_it_deletes(make_webhook, api, alice):
    hook = make_webhook()
    status, _, _ = api.delete(f"{WEBHOOKS}/{hook.id}", auth=alice.key_auth)
    assert status == 204
    assert not Webhook.objects.filter(id=hook.id).exists()
    status, body, _ = api.get(f"{WEBHOOKS}/{hook.id}", auth=alice.key_auth)
    assert status == 404 and body["code"] == 10040


def _get_object_then(monkeypatch, meanwhile):
    """The webhook viewset reads the webhook, then `meanwhile(webhook)` runs: another request landing in between."""
    from integrations.api import WebhookViewSet

    get_object = WebhookViewSet.get_object

    def read_then(self):
        found = get_object(self)
        meanwhile(found)
        return found

    monkeypatch.setattr(WebhookViewSet, "get_object", read_then)


def test_a_patch_racing_a_delete_is_a_404_and_does_not_bring_the_webhook_back(make_webhook, api, alice, monkeypatch):
    hook = make_webhook()
    _get_object_then(monkeypatch, lambda found: Webhook.objects.filter(pk=found.pk).delete())
    status, body, _ = api.patch(f"{WEBHOOKS}/{hook.id}", {"name": "Renamed"}, auth=alice.key_auth)
    assert (status, body["code"]) == (404, 10040), body
    # Saving it had inserted it again, with its secret still accepted on its events URL.
    assert not Webhook.objects.filter(id=hook.id).exists()


def test_a_patch_does_not_undo_a_secret_rotated_meanwhile(make_webhook, api, alice, monkeypatch):
    from integrations import services

    hook = make_webhook()
    rotated = {}
    _get_object_then(monkeypatch, lambda found: rotated.setdefault(
        "secret", services.webhook_rotate_secret(webhook=Webhook.objects.get(pk=found.pk), grace_hours=0).secret
    ))
    status, body, _ = api.patch(f"{WEBHOOKS}/{hook.id}", {"name": "Renamed"}, auth=alice.key_auth)
    assert status == 200, body
    stored = Webhook.objects.get(id=hook.id)
    assert stored.name == "Renamed" and vault.decrypt(stored.secret_encrypted) == rotated["secret"]


# Transactional: SQLite checks the foreign keys at commit, which the usual per-test transaction never reaches.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["create", "patch"])
def test_a_webhook_for_an_agent_deleted_meanwhile_is_refused_like_a_missing_agent(
    make_webhook, api, alice, alice_agent, monkeypatch, action
):
    from agents.models import Agent
    from integrations import api as webhooks_api

    target = Agent.objects.create(owner=alice.user, name="Target")
    hook = make_webhook() if action == "patch" else None
    owned_agent = webhooks_api._owned_agent

    def read_then_deleted(user, agent_id):
        found = owned_agent(user, agent_id)
        Agent.objects.filter(pk=found.pk).delete()  # a DELETE that lands in between
        return found

    monkeypatch.setattr(webhooks_api, "_owned_agent", read_then_deleted)
    if action == "create":
        status, body, _ = api.post(WEBHOOKS, {"name": "x", "agent_id": str(target.id)}, auth=alice.key_auth)
    else:
        status, body, _ = api.patch(f"{WEBHOOKS}/{hook.id}", {"agent_id": str(target.id)}, auth=alice.key_auth)
    assert (status, body["code"]) == (400, 10001), body
    assert body["data"]["errors"] == {"agent_id": ["No agent with this id."]}
    assert list(Webhook.objects.values_list("agent_id", flat=True)) == ([alice_agent.id] if hook else [])


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_the_grace_period(make_webhook, api, alice):
    hook = make_webhook()
    status, body, _ = api.post(f"{WEBHOOKS}/{hook.id}/rotate-secret", auth=alice.key_auth)
    assert status == 200
    new = body["data"]["secret"]
    assert new != hook.secret and new.startswith("whsec_") and body["data"]["secret_hint"] == new[-4:]
    expires = body["data"]["previous_secret_expires_at"]
    stored = Webhook.objects.get(id=hook.id)
    assert vault.decrypt(stored.secret_encrypted) == new
    assert vault.decrypt(stored.previous_secret_encrypted) == hook.secret
    assert abs(stored.previous_secret_expires_at - (timezone.now() + timedelta(hours=24))) < timedelta(minutes=1)
    assert expires is not None


def test_rotation_with_zero_grace_retires_the_old_secret_at_once(make_webhook, api, alice):
    hook = make_webhook()
    status, body, _ = api.post(f"{WEBHOOKS}/{hook.id}/rotate-secret", {"grace_hours": 0}, auth=alice.key_auth)
    assert status == 200 and body["data"]["previous_secret_expires_at"] is None
    stored = Webhook.objects.get(id=hook.id)
    assert stored.previous_secret_encrypted == "" and stored.previous_secret_expires_at is None


def test_it_needs_a_credential(api, db):
    status, body, _ = api.get(WEBHOOKS)
    assert status == 401 and body["code"] == 10010


# --- ownership ------------------------------------------------------------------


def test_bob_sees_none_of_alices_webhooks(make_webhook, api, bob):
    hook = make_webhook()
    status, body, _ = api.get(WEBHOOKS, auth=bob.key_auth)
    assert status == 200 and body["data"]["items"] == []
    for method, path, payload in [
        ("GET", f"{WEBHOOKS}/{hook.id}", None),
        ("PATCH", f"{WEBHOOKS}/{hook.id}", {"name": "mine now"}),
        ("DELETE", f"{WEBHOOKS}/{hook.id}", None),
        ("POST", f"{WEBHOOKS}/{hook.id}/rotate-secret", None),
        ("GET", f"{WEBHOOKS}/{hook.id}/deliveries", None),
    ]:
        status, body, _ = api.call(method, path, payload, auth=bob.key_auth)
        assert (status, body["code"]) == (404, 10040), (method, path)
    stored = Webhook.objects.get(id=hook.id)
    assert stored.name == "CI" and vault.decrypt(stored.secret_encrypted) == hook.secret


def test_a_malformed_id_is_a_404(api, alice):
    status, body, _ = api.get(f"{WEBHOOKS}/not-a-uuid", auth=alice.key_auth)
    assert status == 404 and body["code"] == 10040


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_alice_cannot_point_a_webhook_at_bobs_agent(method, make_webhook, api, alice, bob_agent):
    if method == "POST":
        status, body, _ = api.post(WEBHOOKS, {"name": "x", "agent_id": str(bob_agent.id)}, auth=alice.key_auth)
        assert Webhook.objects.count() == 0
    else:
        hook = make_webhook()
        status, body, _ = api.patch(f"{WEBHOOKS}/{hook.id}", {"agent_id": str(bob_agent.id)}, auth=alice.key_auth)
        assert Webhook.objects.get(id=hook.id).agent.owner == alice.user
    # The same answer as for an agent id that does not exist: nothing leaks.
    assert status == 400 and body["code"] == 10001
    assert body["data"]["errors"] == {"agent_id": ["No agent with this id."]}


def test_a_callback_host_no_dns_name_can_be_is_10001_and_nothing_is_made(api, alice, alice_agent):
    url = "https://" + "a" * 70 + ".example.com/hook"
    status, envelope, _ = api.post("/v1/integrations/webhooks",
                                   {"name": "x", "agent_id": str(alice_agent.id), "callback_url": url},
                                   auth=alice.key_auth)
    assert (status, envelope["code"]) == (400, 10001)
    assert "not a valid host name" in envelope["data"]["errors"]["callback_url"][0]
    assert not Webhook.objects.exists()


# --- ETag, If-Match and If-None-Match ------------------------------------------------


def test_reading_a_webhook_gives_a_stable_etag_and_a_patch_with_it_applies(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    status, _, read = api.get(path, auth=alice.key_auth)
    assert status == 200 and read["ETag"].startswith('"') and read["ETag"].endswith('"')
    assert api.get(path, auth=alice.jwt_auth)[2]["ETag"] == read["ETag"]  # the same webhook, the same tag
    status, body, patched = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=read["ETag"])
    assert status == 200 and body["data"]["name"] == "Renamed"
    assert patched["ETag"] != read["ETag"]
    assert patched["ETag"] == api.get(path, auth=alice.key_auth)[2]["ETag"]  # the new version, as GET says
    assert Webhook.objects.get(id=hook.id).name == "Renamed"


def test_a_webhook_patch_with_a_stale_etag_is_a_412_and_changes_nothing(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.patch(path, {"enabled": False}, auth=alice.key_auth)[0] == 200  # no If-Match: as before
    status, body, response = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    assert body["data"]["request_id"] == response["X-Request-Id"] and "ETag" not in response
    stored = Webhook.objects.get(id=hook.id)
    assert (stored.name, stored.enabled) == ("CI", False)
    # Judged before the body: a stale tag with an invalid body is still the 412.
    status, body, _ = api.patch(path, {"name": ""}, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061)


def test_a_rotated_secret_makes_the_webhooks_etag_stale_without_the_etag_carrying_it(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, rotated = api.post(f"{path}/rotate-secret", auth=alice.key_auth)
    assert status == 200 and "ETag" not in rotated  # the one answer that shows a secret gets no tag
    secret = body["data"]["secret"]
    status, read, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)
    assert status == 200 and response["ETag"] != etag and read["data"]["secret_hint"] == secret[-4:]
    assert secret not in response["ETag"] and hook.secret not in response["ETag"]
    status, body, _ = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061)
    assert api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=response["ETag"])[0] == 200


def test_if_match_is_checked_again_under_the_webhooks_row_lock(make_webhook, api, alice, monkeypatch):
    """A change landing after the webhook was read (and its If-Match first checked) still makes a 412."""
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    _get_object_then(monkeypatch, lambda found: Webhook.objects.filter(pk=found.pk).update(name="Changed meanwhile"))
    status, body, _ = api.patch(path, {"enabled": False}, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    stored = Webhook.objects.get(id=hook.id)
    assert (stored.name, stored.enabled) == ("Changed meanwhile", True)


@pytest.mark.parametrize("header, applies", [("*", True), ("W/{etag}", False), ('"other"', False)])
def test_a_webhooks_if_match_takes_star_and_compares_strongly(make_webhook, api, alice, header, applies):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, _ = api.patch(path, {"name": "Renamed"}, auth=alice.key_auth, HTTP_IF_MATCH=header.format(etag=etag))
    assert status == (200 if applies else 412), body
    assert Webhook.objects.get(id=hook.id).name == ("Renamed" if applies else "CI")


def test_a_webhook_read_with_the_current_etag_in_if_none_match_is_a_304(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=f'"other", W/{etag}')
    assert (status, body, response.content, response["ETag"]) == (304, None, b"", etag)
    assert response["X-Request-Id"] and response["Cache-Control"] == "no-store" and "X-RateLimit-Limit" in response
    assert "Content-Type" not in response and "Content-Length" not in response
    # Changed: the full answer.
    assert api.patch(path, {"enabled": False}, auth=alice.key_auth)[0] == 200
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=etag)
    assert status == 200 and body["data"]["enabled"] is False and response["ETag"] != etag


def test_a_webhook_read_with_an_if_match_naming_another_version_is_a_412(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.post(f"{path}/rotate-secret", auth=alice.key_auth)[0] == 200  # a new version
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061) and "without If-Match" in body["message"], body
    assert "ETag" not in response and hook.secret not in response.content.decode()
    status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_MATCH="*")
    assert status == 200 and body["data"]["id"] == hook.id and response["ETag"] != etag


def test_a_webhook_patch_with_if_none_match_naming_its_version_is_a_412(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    for header in (etag, "*"):
        status, body, _ = api.patch(path, {"enabled": False}, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header)
        assert (status, body["code"]) == (412, 10061) and "If-None-Match" in body["message"], body
    assert Webhook.objects.get(id=hook.id).enabled is True
    assert api.patch(path, {"enabled": False}, auth=alice.key_auth, HTTP_IF_NONE_MATCH='"other"')[0] == 200
    assert Webhook.objects.get(id=hook.id).enabled is False


def test_a_webhook_delete_with_a_stale_if_match_is_a_412_and_deletes_nothing(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.post(f"{path}/rotate-secret", auth=alice.key_auth)[0] == 200  # a rotated secret is a new version
    status, body, response = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    assert "nothing was deleted" in body["message"] and body["data"]["request_id"] == response["X-Request-Id"]
    assert Webhook.objects.filter(id=hook.id).exists()
    fresh = api.get(path, auth=alice.key_auth)[2]["ETag"]
    assert api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=fresh)[0] == 204
    assert not Webhook.objects.filter(id=hook.id).exists()


def test_a_webhook_delete_with_if_none_match_naming_its_version_is_a_412(make_webhook, api, alice):
    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    for header in (f"W/{etag}", "*"):
        status, body, _ = api.delete(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=header)
        assert (status, body["code"]) == (412, 10061) and "If-None-Match" in body["message"], body
    assert Webhook.objects.filter(id=hook.id).exists()


def test_a_webhook_delete_with_if_match_is_checked_again_under_its_row_lock(make_webhook, api, alice, monkeypatch):
    from integrations import services

    hook = make_webhook()
    path = f"{WEBHOOKS}/{hook.id}"
    etag = api.get(path, auth=alice.key_auth)[2]["ETag"]
    rotated = []
    _get_object_then(monkeypatch, lambda found: rotated or rotated.append(
        services.webhook_rotate_secret(webhook=Webhook.objects.get(pk=found.pk), grace_hours=0)
    ))
    status, body, _ = api.delete(path, auth=alice.key_auth, HTTP_IF_MATCH=etag)
    assert (status, body["code"]) == (412, 10061), body
    assert rotated and Webhook.objects.filter(id=hook.id).exists()


def test_webhook_preconditions_do_not_hide_a_missing_or_foreign_webhook(make_webhook, api, bob):
    hook = make_webhook()
    for method in ("GET", "PATCH", "DELETE"):
        status, body, _ = api.call(method, f"{WEBHOOKS}/{hook.id}", {"enabled": False} if method == "PATCH" else None,
                                   auth=bob.key_auth, HTTP_IF_MATCH="*")
        assert (status, body["code"]) == (404, 10040), method
    assert Webhook.objects.get(id=hook.id).enabled is True


def test_a_webhook_patch_with_the_stored_values_changes_nothing(make_webhook, api, alice, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integrations import ssrf

    hook = make_webhook(callback_url="https://ci.example.com/results", question_template="Review {{ pr.title }}")
    path = f"{WEBHOOKS}/{hook.id}"
    _, read, response = api.get(path, auth=alice.key_auth)
    vetted = []
    monkeypatch.setattr(ssrf, "check_callback_url", vetted.append)
    same = {key: read["data"][key] for key in ("name", "agent_id", "enabled", "question_template", "callback_url",
                                               "require_timestamp")}
    with CaptureQueriesContext(connection) as queries:
        status, body, patched = api.patch(path, same, auth=alice.key_auth, HTTP_IF_MATCH=response["ETag"])
    assert status == 200 and body["data"] == read["data"] and patched["ETag"] == response["ETag"]
    assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert vetted == []  # the stored callback URL is not checked (its host resolved) again
    assert api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=response["ETag"])[0] == 304
    # A real change is a new version, and a new callback URL is checked.
    status, body, changed = api.patch(path, {**same, "callback_url": "https://ci.example.com/other"},
                                      auth=alice.key_auth, HTTP_IF_MATCH=patched["ETag"])
    assert status == 200 and changed["ETag"] != response["ETag"] and vetted == ["https://ci.example.com/other"]
    assert body["data"]["updated_at"] > read["data"]["updated_at"]


def test_the_openapi_document_describes_the_webhooks_conditional_requests(api, db):
    item = api.client.get("/v1/openapi.json").json()["paths"][f"{WEBHOOKS}/{{id}}"]
    assert any(p["name"] == "If-None-Match" and p["in"] == "header" for p in item["get"]["parameters"])
    assert "ETag" in item["get"]["responses"]["200"]["headers"] and "ETag" in item["get"]["responses"]["304"]["headers"]
    assert any(p["name"] == "If-Match" and p["in"] == "header" for p in item["patch"]["parameters"])
    assert "ETag" in item["patch"]["responses"]["200"]["headers"]
    assert "10061" in item["patch"]["responses"]["412"]["description"]
    assert item["patch"]["summary"] == "Change a webhook"
    # Every operation on one webhook evaluates both headers.
    for method in ("get", "patch", "delete"):
        names = [p["name"] for p in item[method]["parameters"] if p["in"] == "header"]
        assert "If-Match" in names and "If-None-Match" in names, (method, names)
        assert "10061" in item[method]["responses"]["412"]["description"], method
    assert "rotated secret" in item["delete"]["responses"]["412"]["description"]
