"""API keys kept in the cache between requests (accounts.keycache): fewer reads, the same answers.

Every check still runs per request; these tests change a key or its owner
through each path the product offers and expect the very next request to see it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from accounts import keycache, keys, services
from accounts.models import ApiKey
from combo.cachebreaker import cache_breaker
from combo.errors import ComboError, ErrorCode
from tests.foundation.helpers import assert_error

EITHER = "/v1/test/deprecated-ping"  # any valid credential

# On in every pass (the setting's default is on only with Redis): one process, one cache.
pytestmark = pytest.mark.usefixtures("_key_cache_on")


@pytest.fixture
def _key_cache_on(settings):
    settings.API_KEY_CACHE_SECONDS = 60


def key_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if 'FROM "accounts_apikey"' in q["sql"] and "SELECT" in q["sql"]]


def test_the_second_request_reads_the_key_from_the_cache(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    with CaptureQueriesContext(connection) as queries:
        assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    assert key_queries(queries.captured_queries) == []


@override_settings(API_KEY_CACHE_SECONDS=0)
def test_with_the_cache_off_every_request_reads_the_key(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    with CaptureQueriesContext(connection) as queries:
        assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    assert len(key_queries(queries.captured_queries)) == 1


def test_the_cached_entry_holds_no_password_hash(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    entry = cache.get(keycache._cache_key(keys.visible_prefix(alice.api_key)))
    assert entry is not None
    assert "$" in alice.user.password  # a real hash (tests use a fast hasher)
    assert alice.user.password not in repr(entry)
    assert alice.api_key not in repr(entry)  # only the hash, as in the database


def test_a_key_revoked_through_the_api_fails_at_once(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    key = ApiKey.objects.get(owner=alice.user)
    assert api.delete(f"/v1/api-keys/{key.id}", auth=alice.jwt_auth)[0] == 200
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_REVOKED)


def test_a_key_revoked_from_the_admin_fails_at_once(api, alice, client, admin_user):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    key = ApiKey.objects.get(owner=alice.user)
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [str(key.id)]}, follow=True
    )
    assert response.status_code == 200
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_REVOKED)


def test_an_expiry_set_on_the_key_applies_at_once(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    key = ApiKey.objects.get(owner=alice.user)
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_EXPIRED)


def test_a_deactivated_owner_is_refused_at_once(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    alice.user.is_active = False
    alice.user.save()
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_a_deleted_key_is_unknown_at_once(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    ApiKey.objects.get(owner=alice.user).delete()
    status, body, response = api.get(EITHER, auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.CREDENTIAL_INVALID)


def test_a_per_key_limit_changed_by_an_operator_applies_to_the_next_request(api, alice):
    status, _, response = api.get("/v1/combo/agents", auth=alice.key_auth)
    assert status == 200 and response["X-RateLimit-Limit"] != "7"
    key = ApiKey.objects.get(owner=alice.user)
    key.default_per_minute = 7
    key.save()
    status, _, response = api.get("/v1/combo/agents", auth=alice.key_auth)
    assert status == 200 and response["X-RateLimit-Limit"] == "7"


def test_the_cached_owner_is_the_same_user(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    api_key = keycache.get(keys.visible_prefix(alice.api_key))
    assert api_key.owner.pk == alice.user.pk and api_key.owner.username == "alice"
    # The password was left out of the cache; reading it goes to the database.
    assert api_key.owner.password == alice.user.password


def test_last_used_is_written_once_a_window_even_from_the_cache(api, alice):
    assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    first = ApiKey.objects.get(owner=alice.user).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        assert api.get(EITHER, auth=alice.key_auth)[0] == 200
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


@override_settings(
    CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            # Nothing listens on port 1: every cache call fails at once.
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    },
    RATELIMIT_ENABLE=False,
)
def test_a_cache_that_is_down_leaves_the_database_to_answer(alice):
    for _ in range(2):
        principal = services.authenticate_api_key(alice.api_key)
        assert principal.user.pk == alice.user.pk
    services.api_key_revoke(api_key=ApiKey.objects.get(owner=alice.user))
    with pytest.raises(ComboError) as raised:
        services.authenticate_api_key(alice.api_key)
    assert raised.value.error is ErrorCode.CREDENTIAL_REVOKED


def test_the_stream_paths_batch_reads_keys_through_the_same_cache(alice, bob):
    headers = [f"Bearer {alice.api_key}", f"Bearer {bob.api_key}"]
    first = services.authenticate_bearers(headers)
    assert [p.user.pk for p in first] == [alice.user.pk, bob.user.pk]
    with CaptureQueriesContext(connection) as queries:
        again = services.authenticate_bearers(headers)
    assert [p.user.pk for p in again] == [alice.user.pk, bob.user.pk]
    assert key_queries(queries.captured_queries) == []
    services.api_keys_revoke(ApiKey.objects.filter(owner=bob.user))
    after = services.authenticate_bearers(headers)
    assert after[0].user.pk == alice.user.pk
    assert isinstance(after[1], ComboError) and after[1].error is ErrorCode.CREDENTIAL_REVOKED


def test_a_key_revoked_while_the_cache_was_unreachable_stays_refused_when_it_is_back(alice, monkeypatch):
    """The revocation could not drop the cached row; the row must not be believed once the cache answers again."""
    services.authenticate_api_key(alice.api_key)  # now cached
    monkeypatch.setattr(caches["default"], "delete_many", _unreachable)
    services.api_key_revoke(api_key=ApiKey.objects.get(owner=alice.user))
    monkeypatch.undo()
    cache_breaker.reset()  # the cache answers again (its retry time is up)
    for _ in range(2):
        with pytest.raises(ComboError) as raised:
            services.authenticate_api_key(alice.api_key)
        assert raised.value.error is ErrorCode.CREDENTIAL_REVOKED


def test_rows_cached_before_an_outage_this_process_saw_are_read_again(alice):
    """Another process revoked the key while the cache was unreachable and could not drop its row."""
    services.authenticate_api_key(alice.api_key)  # now cached
    ApiKey.objects.filter(owner=alice.user).update(revoked_at=timezone.now())  # no forget: it failed elsewhere
    cache_breaker.failed(ConnectionError("cache unreachable"))  # seen here too (a rate-limit count, say)
    cache_breaker.reset()  # and back
    with pytest.raises(ComboError) as raised:
        services.authenticate_api_key(alice.api_key)
    assert raised.value.error is ErrorCode.CREDENTIAL_REVOKED


def _unreachable(*args, **kwargs):
    raise ConnectionError("cache unreachable")
