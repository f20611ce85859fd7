"""Django admin for operators: users and API keys, searchable, filterable,
revocable, and never showing a key's hash (nor, of course, the key).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey, User


@pytest.fixture
def operator(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def keys_of(alice, bob):
    """alice: one active key and one revoked; bob: one expired key."""
    alice_active = ApiKey.objects.get(owner=alice.user)
    alice_revoked = services.api_key_create(owner=alice.user, name="old laptop").api_key
    services.api_key_revoke(api_key=alice_revoked)
    bob_expired = ApiKey.objects.get(owner=bob.user)
    bob_expired.expires_at = timezone.now() - timedelta(days=1)
    bob_expired.save()
    return {"alice_active": alice_active, "alice_revoked": alice_revoked, "bob_expired": bob_expired}


def listed(response, *api_keys) -> list[bool]:
    html = response.content.decode()
    return [f"/admin/accounts/apikey/{k.pk}/change/" in html for k in api_keys]


# --- users --------------------------------------------------------------------------


def test_the_user_list_renders_and_searches(operator, alice, bob):
    response = operator.get("/admin/accounts/user/")
    assert response.status_code == 200
    assert "alice" in response.content.decode() and "bob" in response.content.decode()

    response = operator.get("/admin/accounts/user/", {"q": "alice@example"})
    assert response.status_code == 200
    assert f"/admin/accounts/user/{alice.user.pk}/change/" in response.content.decode()
    assert f"/admin/accounts/user/{bob.user.pk}/change/" not in response.content.decode()


def test_the_user_list_filters_by_active(operator, alice, bob):
    bob.user.is_active = False
    bob.user.save()
    response = operator.get("/admin/accounts/user/", {"is_active__exact": "0"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f"/admin/accounts/user/{bob.user.pk}/change/" in html
    assert f"/admin/accounts/user/{alice.user.pk}/change/" not in html


def test_a_user_page_renders_with_a_uuid_id(operator, alice):
    response = operator.get(f"/admin/accounts/user/{alice.user.pk}/change/")
    assert response.status_code == 200
    assert "alice@example.com" in response.content.decode()


def test_an_operator_adds_a_user(operator, db):
    assert operator.get("/admin/accounts/user/add/").status_code == 200
    response = operator.post(
        "/admin/accounts/user/add/",
        {"username": "frank", "password1": "a long pass phrase 42", "password2": "a long pass phrase 42",
         "usable_password": "true"},
    )
    frank = User.objects.get(username="frank")
    assert response.status_code == 302 and str(frank.pk) in response["Location"]
    assert frank.check_password("a long pass phrase 42") and not frank.is_staff


def test_an_ordinary_user_is_kept_out(client, alice):
    client.force_login(alice.user)
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- API keys -----------------------------------------------------------------------


def test_the_key_list_renders_every_key(operator, keys_of):
    response = operator.get("/admin/accounts/apikey/")
    assert response.status_code == 200
    assert listed(response, *keys_of.values()) == [True, True, True]
    html = response.content.decode()
    assert keys_of["alice_active"].prefix in html
    for api_key in keys_of.values():
        assert api_key.key_hash not in html


def test_the_key_list_searches_by_owner_name_and_prefix(operator, keys_of):
    response = operator.get("/admin/accounts/apikey/", {"q": "alice"})
    assert listed(response, keys_of["alice_active"], keys_of["alice_revoked"], keys_of["bob_expired"]) == [
        True, True, False,
    ]
    response = operator.get("/admin/accounts/apikey/", {"q": keys_of["bob_expired"].prefix})
    assert listed(response, keys_of["alice_active"], keys_of["bob_expired"]) == [False, True]
    response = operator.get("/admin/accounts/apikey/", {"q": "old laptop"})
    assert listed(response, keys_of["alice_active"], keys_of["alice_revoked"]) == [False, True]


@pytest.mark.parametrize(
    "status, expected",
    [("revoked", [False, True, False]), ("expired", [False, False, True]), ("active", [True, False, False])],
)
def test_the_key_list_filters_by_status(operator, keys_of, status, expected):
    response = operator.get("/admin/accounts/apikey/", {"status": status})
    assert response.status_code == 200
    assert listed(response, keys_of["alice_active"], keys_of["alice_revoked"], keys_of["bob_expired"]) == expected


def test_the_key_page_never_shows_the_hash(operator, alice):
    created = services.api_key_create(owner=alice.user, name="deploy")
    response = operator.get(f"/admin/accounts/apikey/{created.api_key.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert created.api_key.prefix in html and "deploy" in html
    assert created.api_key.key_hash not in html
    assert created.plain_key not in html and created.plain_key[20:] not in html
    assert "key_hash" not in html


def test_an_operator_edit_keeps_the_hash_and_the_key_working(operator, api, alice):
    row = ApiKey.objects.get(owner=alice.user)
    expires = (timezone.now() + timedelta(days=7)).replace(microsecond=0, second=0)
    response = operator.post(
        f"/admin/accounts/apikey/{row.pk}/change/",
        {
            "name": "renamed by ops",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
            "completions_per_minute": "5",
            "uploads_per_minute": "",
            "default_per_minute": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    updated = ApiKey.objects.get(pk=row.pk)
    assert updated.name == "renamed by ops" and updated.completions_per_minute == 5
    assert updated.expires_at == expires
    assert updated.key_hash == row.key_hash and updated.prefix == row.prefix and updated.owner == alice.user
    assert api.get("/v1/test/deprecated-ping", auth=alice.key_auth)[0] == 200


def test_an_operator_cannot_add_a_key_from_the_admin(operator, db):
    # Keys are created by their owners (shown once); there is no add page.
    assert operator.get("/admin/accounts/apikey/add/").status_code == 403


def test_the_revoke_action_revokes_the_selected_keys(operator, api, alice, bob, keys_of):
    first_revocation = keys_of["alice_revoked"].revoked_at
    response = operator.post(
        "/admin/accounts/apikey/",
        {
            "action": "revoke",
            "_selected_action": [str(keys_of["alice_active"].pk), str(keys_of["alice_revoked"].pk)],
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 key(s)." in response.content.decode()

    keys_of["alice_active"].refresh_from_db()
    keys_of["alice_revoked"].refresh_from_db()
    keys_of["bob_expired"].refresh_from_db()
    assert keys_of["alice_active"].revoked_at is not None
    assert keys_of["alice_revoked"].revoked_at == first_revocation  # already revoked: time kept
    assert keys_of["bob_expired"].revoked_at is None  # not selected
    status, body, _ = api.get("/v1/test/deprecated-ping", auth=alice.key_auth)
    assert status == 401 and body["code"] == 10012


# --- every change list, with filters typed into the URL ------------------------------

CHANGE_LISTS = {
    "/admin/accounts/user/": "date_joined",
    "/admin/accounts/apikey/": "last_used_at",
    "/admin/agents/agent/": "created_at",
    "/admin/agents/session/": "created_at",
    "/admin/agents/message/": "created_at",
    "/admin/agents/knowledgefile/": "processed_at",
    "/admin/agents/chunk/": "index",
    "/admin/integrations/webhook/": "secret_rotated_at",
    "/admin/integrations/webhookdelivery/": "started_at",
}


@pytest.mark.parametrize("url", CHANGE_LISTS)
@pytest.mark.parametrize("lookup, value", [("__year", "99999"), ("__year", "0"), ("__range", "1")])
def test_a_change_list_answers_a_filter_it_cannot_run_with_its_error_page(operator, keys_of, url, lookup, value):
    # Django admin turns a filter it cannot apply into "?e=1" (its error notice), never a 500.
    response = operator.get(url, {CHANGE_LISTS[url] + lookup: value})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
    assert operator.get(response["Location"]).status_code == 200


# --- a long session ---------------------------------------------------------------------


def test_a_long_sessions_page_shows_its_latest_messages_and_links_to_all(operator, alice):
    from agents.admin import MESSAGES_SHOWN
    from agents.models import Agent, Message, Session

    agent = Agent.objects.create(owner=alice.user, name="Reviewer")
    session = Session.objects.create(agent=agent, owner=alice.user)
    total = MESSAGES_SHOWN + 12
    start = timezone.now()
    Message.objects.bulk_create(
        Message(session=session, role=Message.Role.USER, content=f"question {n:03}", status=Message.Status.COMPLETE,
                created_at=start + timedelta(seconds=n))
        for n in range(total)
    )
    page = operator.get(f"/admin/agents/session/{session.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"question {total - 1:03}" in html and f"question {total - MESSAGES_SHOWN:03}" in html
    assert f"question {total - MESSAGES_SHOWN - 1:03}" not in html  # older ones are on the Messages list
    assert f"All {total} message(s) of this session" in html
    listing = operator.get(f"/admin/agents/message/?session__id__exact={session.pk}")
    assert listing.status_code == 200 and f"{total} messages" in listing.content.decode()
    # Saving the session's page (its title) still works with the shortened list.
    created = timezone.localtime(session.created_at)
    data = {"agent": agent.pk, "owner": alice.user.pk, "title": "Renamed",
            "created_at_0": created.strftime("%Y-%m-%d"), "created_at_1": created.strftime("%H:%M:%S"),
            "messages-TOTAL_FORMS": str(MESSAGES_SHOWN), "messages-INITIAL_FORMS": str(MESSAGES_SHOWN),
            "messages-MIN_NUM_FORMS": "0", "messages-MAX_NUM_FORMS": "1000"}
    for index, message in enumerate(page.context["inline_admin_formsets"][0].formset.queryset):
        data[f"messages-{index}-id"] = str(message.pk)
        data[f"messages-{index}-session"] = str(session.pk)
    saved = operator.post(f"/admin/agents/session/{session.pk}/change/", data)
    assert saved.status_code == 302, [e for e in saved.content.decode().splitlines() if "error" in e.lower()][:20]
    session.refresh_from_db()
    assert session.title == "Renamed" and Message.objects.filter(session=session).count() == total
