"""Sign-in, sign-up, password and API-key pages, through Django's test client.

Who may see what: alice and bob each see only their own keys; another user's
key answers 404 exactly like a key that does not exist.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey, User

SIGNED_IN_PAGES = [
    "/console/agents/",
    "/console/agents/new/",
    f"/console/agents/{uuid.uuid4()}/",
    f"/console/agents/{uuid.uuid4()}/delete/",
    f"/console/agents/{uuid.uuid4()}/playground/",
    "/console/settings/api-keys/",
    f"/console/settings/api-keys/{uuid.uuid4()}/revoke/",
    "/console/settings/password/",
    "/console/api/",
    "/console/api/postman.json",
]


def body(response) -> str:
    return response.content.decode()


def form_token(response) -> str:
    return re.search(r'name="form_token" value="([^"]+)"', body(response)).group(1)


# --- Signing in ---------------------------------------------------------------

@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_every_page_sends_a_signed_out_visitor_to_sign_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/console/login/?next={path}"


def test_the_root_and_console_home_lead_to_the_agents(alice_client):
    assert alice_client.get("/")["Location"] == "/console/"
    assert alice_client.get("/console/")["Location"] == "/console/agents/"


def test_sign_in_page_says_how_to_make_the_first_user_when_there_are_none(client, db):
    page = body(client.get("/console/login/"))
    assert "No users yet" in page and "python manage.py createsuperuser" in page


def test_sign_in_page_drops_that_hint_once_a_user_exists(client, alice):
    page = body(client.get("/console/login/"))
    assert "No users yet" not in page
    assert "/console/signup/" not in page  # sign-up is off by default


def test_signing_in_lands_on_the_agents_page(client, alice):
    response = client.post("/console/login/", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 302 and response["Location"] == "/console/"
    assert client.get("/console/agents/").status_code == 200


def test_a_wrong_password_is_explained_on_the_form(client, alice):
    response = client.post("/console/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert 'class="form-errors"' in body(response) and "enter a correct username and password" in body(response)


def test_sign_in_refuses_a_post_without_the_csrf_token(alice):
    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/console/login/", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 403


def test_sign_out_is_a_post(alice_client):
    assert alice_client.get("/console/logout/").status_code == 405
    response = alice_client.post("/console/logout/")
    assert response.status_code == 302 and response["Location"] == "/console/login/"
    assert alice_client.get("/console/agents/").status_code == 302


def test_sign_up_is_off_unless_the_operator_turns_it_on(client, db):
    assert client.get("/console/signup/").status_code == 404
    assert client.post("/console/signup/", {"username": "mallory"}).status_code == 404
    assert not User.objects.filter(username="mallory").exists()


@override_settings(COMBO_ALLOW_SIGNUP=True)
def test_sign_up_when_on_creates_the_user_and_signs_them_in(client, db):
    assert "/console/signup/" in body(client.get("/console/login/"))
    response = client.post("/console/signup/", {
        "username": "carol", "email": "carol@example.com",
        "password1": "a long enough passphrase", "password2": "a long enough passphrase",
    })
    assert response.status_code == 302
    carol = User.objects.get(username="carol")
    assert carol.check_password("a long enough passphrase") and not carol.is_staff
    assert client.get("/console/agents/").status_code == 200


@override_settings(COMBO_ALLOW_SIGNUP=True)
def test_sign_up_shows_each_error_next_to_its_field(client, alice):
    response = client.post("/console/signup/", {
        "username": "alice", "password1": "a long enough passphrase", "password2": "different",
    })
    page = body(response)
    assert response.status_code == 200
    assert re.search(r'id="id_username_error">\s*<li>A user with that username already exists', page)
    assert re.search(r'id="id_password2_error">\s*<li>The two password fields didn', page)


def test_password_change_checks_the_old_password_then_changes_it(alice_client, alice):
    wrong = alice_client.post("/console/settings/password/", {
        "old_password": "wrong", "new_password1": "another fine passphrase", "new_password2": "another fine passphrase",
    })
    assert re.search(r'id="id_old_password_error">\s*<li>Your old password was entered incorrectly', body(wrong))
    right = alice_client.post("/console/settings/password/", {
        "old_password": "correct horse battery",
        "new_password1": "another fine passphrase", "new_password2": "another fine passphrase",
    }, follow=True)
    assert "Your password was changed." in body(right)
    alice.user.refresh_from_db()
    assert alice.user.check_password("another fine passphrase")
    assert alice_client.get("/console/agents/").status_code == 200  # still signed in here


# --- API keys -----------------------------------------------------------------

def test_the_key_list_shows_name_prefix_dates_and_status(alice_client, alice):
    key = ApiKey.objects.get(owner=alice.user)
    page = body(alice_client.get("/console/settings/api-keys/"))
    assert "alice&#x27;s key" in page and f"{key.prefix}…" in page
    for column in ("Name", "Key", "Created", "Last used", "Expires", "Status"):
        assert f'<th scope="col">{column}</th>' in page
    assert 'badge-active">Active' in page
    assert alice.api_key not in page


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(alice_client, alice):
    page = alice_client.get("/console/settings/api-keys/")
    response = alice_client.post(
        "/console/settings/api-keys/create/", {"name": "ci", "form_token": form_token(page)}
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    plain = re.search(r'id="new-key-value"[^>]*value="(ragflow-[^"]+)"', body(response)).group(1)
    assert "It will not be shown again" in body(response)
    stored = ApiKey.objects.get(owner=alice.user, name="ci")
    assert stored.key_hash == hashlib.sha256(plain.encode()).hexdigest() and stored.expires_at is None
    assert plain not in body(alice_client.get("/console/settings/api-keys/"))
    assert services.authenticate_api_key(plain).user == alice.user


def test_sending_the_same_form_again_does_not_mint_a_second_key(alice_client, alice):
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    first = alice_client.post("/console/settings/api-keys/create/", {"name": "once", "form_token": token})
    again = alice_client.post("/console/settings/api-keys/create/", {"name": "once", "form_token": token})
    assert first.status_code == 201
    assert again.status_code == 302 and again["Location"] == "/console/settings/api-keys/"
    assert ApiKey.objects.filter(owner=alice.user, name="once").count() == 1
    followed = body(alice_client.get("/console/settings/api-keys/"))
    assert "already sent" in followed and 'id="new-key-value"' not in followed


def test_two_copies_of_the_form_sent_at_once_mint_one_key(alice_client, alice):
    # A double click or a retried request: the second copy read the session before the first one
    # had spent the form's token in it. The token is still spent only once.
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    before = alice_client.session["api_key_form_tokens"]
    first = alice_client.post("/console/settings/api-keys/create/", {"name": "once", "form_token": token})
    session = alice_client.session
    session["api_key_form_tokens"] = before
    session.save()
    again = alice_client.post("/console/settings/api-keys/create/", {"name": "once", "form_token": token})
    assert first.status_code == 201
    assert again.status_code == 302 and again["Location"] == "/console/settings/api-keys/"
    assert ApiKey.objects.filter(owner=alice.user, name="once").count() == 1


def test_a_repeated_key_form_says_so_on_the_list(alice_client, alice):
    # A reload also says that the full key was shown once; a copy sent at the same moment, only where it is.
    form = {"name": "once", "form_token": form_token(alice_client.get("/console/settings/api-keys/"))}
    before = alice_client.session["api_key_form_tokens"]
    assert alice_client.post("/console/settings/api-keys/create/", form).status_code == 201
    reload = alice_client.post("/console/settings/api-keys/create/", form, follow=True)
    assert reload.redirect_chain == [("/console/settings/api-keys/", 302)]
    assert (
        '<p class="flash flash-info">That form was already sent. Its key is in the list below; '
        "a full key is shown only once.</p>"
    ) in body(reload)
    session = alice_client.session
    session["api_key_form_tokens"] = before
    session.save()
    at_once = alice_client.post("/console/settings/api-keys/create/", form, follow=True)
    assert at_once.redirect_chain == [("/console/settings/api-keys/", 302)]
    assert '<p class="flash flash-info">That form was already sent. Its key is in the list below.</p>' in body(at_once)
    # A made-up token mints nothing either.
    made_up = alice_client.post("/console/settings/api-keys/create/", {"name": "other", "form_token": "made-up"})
    assert made_up.status_code == 302 and made_up["Location"] == "/console/settings/api-keys/"
    assert ApiKey.objects.filter(owner=alice.user, name__in=["once", "other"]).count() == 1


def test_a_refused_key_form_keeps_its_token_and_the_new_key_page_carries_a_fresh_one(alice_client, alice):
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    refused = alice_client.post("/console/settings/api-keys/create/", {"name": " ", "form_token": token})
    assert refused.status_code == 400 and form_token(refused) == token
    created = alice_client.post("/console/settings/api-keys/create/", {"name": "fixed", "form_token": token})
    assert created.status_code == 201 and form_token(created) != token
    another = alice_client.post(
        "/console/settings/api-keys/create/", {"name": "another", "form_token": form_token(created)}
    )
    assert another.status_code == 201
    assert ApiKey.objects.filter(owner=alice.user, name__in=["fixed", "another"]).count() == 2


def test_a_key_form_that_failed_on_the_server_may_be_sent_again(alice_client, alice, monkeypatch):
    # The database went away while the key was being made: nothing was made, so the same form
    # (the browser's back button, then send) makes the key rather than saying it was already sent.
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    real_create = services.api_key_create

    def broken(**fields):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "api_key_create", broken)
    with pytest.raises(RuntimeError):
        alice_client.post("/console/settings/api-keys/create/", {"name": "retried", "form_token": token})
    monkeypatch.setattr(services, "api_key_create", real_create)
    again = alice_client.post("/console/settings/api-keys/create/", {"name": "retried", "form_token": token})
    assert again.status_code == 201 and 'id="new-key-value"' in body(again)
    assert ApiKey.objects.filter(owner=alice.user, name="retried").count() == 1


def test_a_create_form_sent_after_the_session_ended_leads_back_to_the_keys_page(client, alice):
    # The session ended while the page was open: the POST goes to sign in, which then sends a GET to
    # the form's URL. That GET lands on the keys page (nothing created), never on a blank 405.
    sent = client.post("/console/settings/api-keys/create/", {"name": "ci", "form_token": "stale"})
    assert sent.status_code == 302 and sent["Location"] == "/console/login/?next=/console/settings/api-keys/create/"
    client.force_login(alice.user)
    response = client.get("/console/settings/api-keys/create/", follow=True)
    assert response.redirect_chain == [("/console/settings/api-keys/", 302)]
    assert response.status_code == 200 and "Create a key" in body(response)
    assert ApiKey.objects.filter(owner=alice.user).count() == 1  # the cast's own key only


def test_an_expiry_in_the_past_is_refused_next_to_its_field(alice_client, alice):
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    response = alice_client.post("/console/settings/api-keys/create/", {
        "name": "old", "expires_on": "2001-01-01", "form_token": token,
    })
    page = body(response)
    assert response.status_code == 400
    assert re.search(r'id="id_expires_on_error">\s*<li>Pick a day after today', page)
    assert re.search(r'<input[^>]*aria-invalid="true"[^>]*id="id_expires_on"', page)
    assert not ApiKey.objects.filter(name="old").exists()


def test_a_blank_name_is_refused_next_to_its_field(alice_client):
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    response = alice_client.post("/console/settings/api-keys/create/", {"name": "  ", "form_token": token})
    assert response.status_code == 400
    assert re.search(r'id="id_name_error">\s*<li>', body(response))


def test_an_expiry_day_means_midnight_utc_that_day(alice_client, alice):
    day = (timezone.now() + timedelta(days=30)).date()
    token = form_token(alice_client.get("/console/settings/api-keys/"))
    alice_client.post("/console/settings/api-keys/create/", {
        "name": "monthly", "expires_on": day.isoformat(), "form_token": token,
    })
    stored = ApiKey.objects.get(name="monthly")
    assert stored.expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_revoking_asks_first_and_only_a_post_revokes(alice_client, alice):
    key = ApiKey.objects.get(owner=alice.user)
    confirm = alice_client.get(f"/console/settings/api-keys/{key.id}/revoke/")
    assert confirm.status_code == 200 and "cannot be undone" in body(confirm)
    key.refresh_from_db()
    assert key.revoked_at is None
    response = alice_client.post(f"/console/settings/api-keys/{key.id}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == "revoked"
    assert 'badge-revoked">Revoked' in body(alice_client.get("/console/settings/api-keys/"))


def test_revoking_refuses_a_post_without_the_csrf_token(alice):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice.user)
    key = ApiKey.objects.get(owner=alice.user)
    assert strict.post(f"/console/settings/api-keys/{key.id}/revoke/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_alice_neither_sees_nor_revokes_bobs_keys(alice_client, bob):
    bobs = ApiKey.objects.get(owner=bob.user)
    page = body(alice_client.get("/console/settings/api-keys/"))
    assert not re.search(r"\bbob\b", page) and bobs.prefix not in page  # a bare "bob" can be in a CSRF token
    assert alice_client.get(f"/console/settings/api-keys/{bobs.id}/revoke/").status_code == 404
    assert alice_client.post(f"/console/settings/api-keys/{bobs.id}/revoke/").status_code == 404
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_key_names_are_escaped(alice_client, alice):
    services.api_key_create(owner=alice.user, name="<script>alert(1)</script>")
    page = body(alice_client.get("/console/settings/api-keys/"))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- The page JavaScript's token ---------------------------------------------------

def test_the_console_token_is_a_five_minute_jwt_that_works_on_v1(alice_client, alice, api):
    response = alice_client.get("/console/token")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    data = response.json()
    assert data["token_type"] == "Bearer" and data["expires_in"] == 300
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken(data["access"])
    assert token["exp"] - token["iat"] == 300
    status, envelope, _ = api.get("/v1/combo/agents", auth={"HTTP_AUTHORIZATION": f"Bearer {data['access']}"})
    assert status == 200 and envelope["code"] == 0


def test_the_console_token_needs_a_session_and_a_same_site_caller(client, alice):
    signed_out = client.get("/console/token")
    assert signed_out.status_code == 401 and "access" not in signed_out.json()
    client.force_login(alice.user)
    cross = client.get("/console/token", HTTP_SEC_FETCH_SITE="cross-site")
    assert cross.status_code == 403 and "access" not in cross.json()
    assert client.get("/console/token", HTTP_SEC_FETCH_SITE="same-origin").status_code == 200
    assert client.post("/console/token").status_code == 405
