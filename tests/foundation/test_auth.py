"""The bearer matrix: API keys (`ragflow-...`) and JWTs through real endpoints.

GET /v1/api-keys needs a JWT, so an API key there answers 403 10031: that is
the proof the key itself authenticated (a bad key is a 401 first). The
test-only /v1/test/deprecated-ping accepts either credential.
"""

from __future__ import annotations

from datetime import timedelta

import jwt as pyjwt
import pytest
import time_machine
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts import keys
from accounts.models import ApiKey
from combo.errors import ErrorCode
from tests.foundation.helpers import assert_error, assert_ok

PROTECTED = "/v1/api-keys"  # JWT only
EITHER = "/v1/test/deprecated-ping"  # any valid credential


def bearer(value: str) -> dict:
    return {"HTTP_AUTHORIZATION": value}


def forge_checksum(key: str) -> str:
    """The same key with its last checksum character changed."""
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


# --- the credentials that work ------------------------------------------------


def test_a_jwt_reaches_a_jwt_only_endpoint(api, alice):
    status, body, response = api.get(PROTECTED, auth=alice.jwt_auth)
    assert_ok(status, body, response)


def test_an_api_key_reaches_an_endpoint_that_takes_keys(api, alice):
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert assert_ok(status, body, response) == {"pong": True}


def test_an_api_key_authenticates_but_is_refused_key_management(api, alice):
    status, body, response = api.get(PROTECTED, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.JWT_REQUIRED)


def test_the_scheme_name_is_case_insensitive(api, alice):
    # RFC 7235: the auth-scheme token is case-insensitive.
    status, body, response = api.get(PROTECTED, auth=bearer(f"bearer {alice.jwt}"))
    assert_ok(status, body, response)


# --- missing and malformed headers --------------------------------------------


def test_it_answers_401_10010_without_a_credential(api, alice):
    status, body, response = api.get(PROTECTED)
    assert_error(status, body, response, ErrorCode.UNAUTHENTICATED)
    assert response["WWW-Authenticate"] == 'Bearer realm="combo"'


@pytest.mark.parametrize(
    "header",
    ["Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer ", "Bearer one two", "Token abc", "ragflow-abc"],
)
def test_it_rejects_a_malformed_authorization_header(api, alice, header, django_assert_num_queries):
    with django_assert_num_queries(0):
        status, body, response = api.get(PROTECTED, auth=bearer(header))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


# --- API keys -----------------------------------------------------------------


def test_it_rejects_a_key_with_a_wrong_checksum_without_touching_the_database(
    api, alice, django_assert_num_queries
):
    forged = forge_checksum(alice.api_key)
    assert not keys.is_well_formed(forged)
    with django_assert_num_queries(0):
        status, body, response = api.get(EITHER, auth=bearer(f"Bearer {forged}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


@pytest.mark.parametrize(
    "made_up",
    [
        "ragflow-" + "a" * 46,
        "ragflow-" + "A1" * 23,
        "ragflow-short",
        "ragflow-" + "a" * 45 + "!",
        "ragflow-" + "a" * 100,
    ],
)
def test_it_rejects_a_made_up_key_without_touching_the_database(api, db, made_up, django_assert_num_queries):
    assert not keys.is_well_formed(made_up)
    with django_assert_num_queries(0):
        status, body, response = api.get(EITHER, auth=bearer(f"Bearer {made_up}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_a_well_formed_key_nobody_was_given(api, alice):
    stranger = keys.generate()
    assert keys.is_well_formed(stranger)
    status, body, response = api.get(EITHER, auth=bearer(f"Bearer {stranger}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_a_key_that_shares_a_real_keys_prefix(api, alice):
    # Same visible prefix (the lookup), different secret part: the hash decides.
    visible = keys.visible_prefix(alice.api_key)[len(keys.KEY_PREFIX):]
    random_part = visible + ("z" if alice.api_key[-7] != "z" else "y") * (keys.RANDOM_LENGTH - len(visible))
    lookalike = keys.KEY_PREFIX + random_part + keys.checksum(random_part)
    assert keys.is_well_formed(lookalike) and lookalike != alice.api_key
    assert keys.visible_prefix(lookalike) == keys.visible_prefix(alice.api_key)
    status, body, response = api.get(EITHER, auth=bearer(f"Bearer {lookalike}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_revoked_key(api, alice):
    ApiKey.objects.filter(owner=alice.user).update(revoked_at=timezone.now())
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_REVOKED)


def test_it_rejects_expired_key(api, alice):
    ApiKey.objects.filter(owner=alice.user).update(expires_at=timezone.now() - timedelta(seconds=1))
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_EXPIRED)


def test_a_key_works_until_its_expiry_and_not_after(api, alice):
    expires = timezone.now() + timedelta(hours=1)
    ApiKey.objects.filter(owner=alice.user).update(expires_at=expires)
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    with time_machine.travel(expires + timedelta(seconds=1), tick=False):
        status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_EXPIRED)


def test_it_rejects_the_key_of_a_deactivated_user(api, alice):
    alice.user.is_active = False
    alice.user.save()
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


# --- JWTs ---------------------------------------------------------------------


def test_it_rejects_an_expired_jwt(api, alice):
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    assert api.get(PROTECTED, auth=alice.jwt_auth)[0] == 200
    with time_machine.travel(timezone.now() + lifetime + timedelta(seconds=5), tick=False):
        status, body, response = api.get(PROTECTED, auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_EXPIRED)


def test_it_rejects_a_jwt_signed_with_another_secret(api, alice):
    claims = dict(AccessToken(alice.jwt).payload)
    forged = pyjwt.encode(claims, "not-the-server-secret-" + "x" * 40, algorithm="HS256")
    status, body, response = api.get(PROTECTED, auth=bearer(f"Bearer {forged}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_an_unsigned_jwt(api, alice):
    claims = dict(AccessToken(alice.jwt).payload)
    forged = pyjwt.encode(claims, None, algorithm="none")
    status, body, response = api.get(PROTECTED, auth=bearer(f"Bearer {forged}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_a_refresh_token_used_as_an_access_token(api, alice):
    refresh = str(RefreshToken.for_user(alice.user))
    status, body, response = api.get(PROTECTED, auth=bearer(f"Bearer {refresh}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."])
def test_it_rejects_a_garbage_jwt(api, alice, garbage):
    status, body, response = api.get(PROTECTED, auth=bearer(f"Bearer {garbage}"))
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_the_jwt_of_a_deactivated_user(api, alice):
    alice.user.is_active = False
    alice.user.save()
    status, body, response = api.get(PROTECTED, auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_it_rejects_the_jwt_of_a_deleted_user(api, alice):
    alice.user.delete()
    status, body, response = api.get(PROTECTED, auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


# --- POST /v1/auth/token and /v1/auth/token/refresh ---------------------------


def test_the_right_password_gives_an_access_and_a_refresh_token(api, alice):
    status, body, response = api.post("/v1/auth/token", {"username": "alice", "password": "correct horse battery"})
    data = assert_ok(status, body, response)
    assert set(data) == {"access", "refresh"}
    assert AccessToken(data["access"])["user_id"] == str(alice.user.id)
    # The new access token is a working credential.
    status, body, response = api.get(PROTECTED, auth=bearer(f"Bearer {data['access']}"))
    assert_ok(status, body, response)


def test_a_wrong_password_is_10014(api, alice):
    status, body, response = api.post("/v1/auth/token", {"username": "alice", "password": "wrong"})
    assert_error(status, body, response, ErrorCode.LOGIN_FAILED)


def test_an_unknown_user_answers_exactly_like_a_wrong_password(api, alice):
    _, wrong_password, _ = api.post("/v1/auth/token", {"username": "alice", "password": "wrong"})
    status, unknown_user, response = api.post("/v1/auth/token", {"username": "mallory", "password": "wrong"})
    assert_error(status, unknown_user, response, ErrorCode.LOGIN_FAILED)
    assert unknown_user["message"] == wrong_password["message"]


def test_a_deactivated_user_cannot_log_in(api, alice):
    alice.user.is_active = False
    alice.user.save()
    status, body, response = api.post("/v1/auth/token", {"username": "alice", "password": "correct horse battery"})
    assert_error(status, body, response, ErrorCode.LOGIN_FAILED)


def test_a_login_without_a_password_is_10001(api, alice):
    status, body, response = api.post("/v1/auth/token", {"username": "alice"})
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert list(data["errors"]) == ["password"]


def test_a_refresh_token_renews_the_access_token(api, alice):
    _, body, _ = api.post("/v1/auth/token", {"username": "alice", "password": "correct horse battery"})
    status, body, response = api.post("/v1/auth/token/refresh", {"refresh": body["data"]["refresh"]})
    data = assert_ok(status, body, response)
    assert "access" in data
    status, body, response = api.get(PROTECTED, auth=bearer(f"Bearer {data['access']}"))
    assert_ok(status, body, response)


@pytest.mark.parametrize("refresh", ["garbage", "a.b.c"])
def test_a_garbage_refresh_token_is_401(api, alice, refresh):
    status, body, response = api.post("/v1/auth/token/refresh", {"refresh": refresh})
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_an_access_token_is_not_a_refresh_token(api, alice):
    status, body, response = api.post("/v1/auth/token/refresh", {"refresh": alice.jwt})
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_an_expired_refresh_token_is_10013(api, alice):
    refresh = str(RefreshToken.for_user(alice.user))
    lifetime = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
    with time_machine.travel(timezone.now() + lifetime + timedelta(seconds=5), tick=False):
        status, body, response = api.post("/v1/auth/token/refresh", {"refresh": refresh})
    assert_error(status, body, response, ErrorCode.CREDENTIAL_EXPIRED)


def test_a_deactivated_user_cannot_refresh(api, alice):
    refresh = str(RefreshToken.for_user(alice.user))
    alice.user.is_active = False
    alice.user.save()
    status, body, response = api.post("/v1/auth/token/refresh", {"refresh": refresh})
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)
