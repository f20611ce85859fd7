"""Families, budgets and headers through the real throttle (stand-in views at the real paths)."""

from __future__ import annotations

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import ApiKey
from tests.ratelimit.conftest import COMPLETIONS, FILES, PING

pytestmark = [pytest.mark.urls("tests.ratelimit.urls"), pytest.mark.django_db]


def complete(api, auth):
    return api.post(COMPLETIONS, {"question": "Review this PR for me"}, auth=auth)


def upload(api, auth):
    return api.post(FILES, {}, auth=auth)


def test_the_61st_completion_in_a_minute_is_refused_while_default_calls_still_pass(api, alice, clock):
    for n in range(1, 61):
        status, body, response = complete(api, alice.key_auth)
        assert status == 200, (n, body)
        assert response["X-RateLimit-Remaining"] == str(60 - n)

    status, body, response = complete(api, alice.key_auth)

    assert status == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body == {
        "code": 10090,
        "message": "Rate limit for completions exceeded: 60 requests per minute.",
        "data": {
            "request_id": response["X-Request-Id"],
            "family": "completions",
            "limit": 60,
            "retry_after": retry_after,
        },
    }
    assert response["X-RateLimit-Limit"] == "60"
    assert response["X-RateLimit-Remaining"] == "0"
    assert response["X-RateLimit-Reset"] == str(retry_after)

    status, body, response = api.get(PING, auth=alice.key_auth)
    assert status == 200 and body["data"] == {"pong": True}
    assert response["X-RateLimit-Limit"] == "300"
    assert response["X-RateLimit-Remaining"] == "299"


def test_families_do_not_share_a_budget(api, alice, clock):
    for _ in range(10):
        assert upload(api, alice.key_auth)[0] == 201

    status, body, response = upload(api, alice.key_auth)
    assert status == 429
    assert body["message"] == "Rate limit for uploads exceeded: 10 requests per minute."
    assert body["data"]["family"] == "uploads"

    status, _, response = complete(api, alice.key_auth)
    assert status == 200
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("60", "59")


def test_alices_budget_does_not_touch_bobs(api, alice, bob, clock, limits):
    limits(completions=2)
    assert complete(api, alice.key_auth)[0] == 200
    assert complete(api, alice.key_auth)[0] == 200
    assert complete(api, alice.key_auth)[0] == 429

    status, _, response = complete(api, bob.key_auth)
    assert status == 200
    assert response["X-RateLimit-Remaining"] == "1"


def test_each_api_key_has_its_own_budget(api, alice, clock, limits):
    from accounts import services

    limits(completions=1)
    second_key = services.api_key_create(owner=alice.user, name="ci").plain_key
    assert complete(api, alice.key_auth)[0] == 200
    assert complete(api, alice.key_auth)[0] == 429

    status, _, _ = complete(api, {"HTTP_AUTHORIZATION": f"Bearer {second_key}"})
    assert status == 200


def test_jwt_callers_share_one_budget_per_user_apart_from_their_keys(api, alice, clock, limits):
    limits(default=2)
    other_token = str(RefreshToken.for_user(alice.user).access_token)
    assert api.get(PING, auth=alice.jwt_auth)[0] == 200
    assert api.get(PING, auth={"HTTP_AUTHORIZATION": f"Bearer {other_token}"})[0] == 200

    status, body, _ = api.get(PING, auth=alice.jwt_auth)
    assert status == 429 and body["data"]["family"] == "default"

    # Her API key is its own budget.
    assert api.get(PING, auth=alice.key_auth)[0] == 200


def test_callers_without_a_credential_are_counted_per_client_ip(api, db, clock, limits):
    limits(health=1)
    assert api.get("/v1/health", REMOTE_ADDR="198.51.100.1")[0] == 200
    status, body, _ = api.get("/v1/health", REMOTE_ADDR="198.51.100.1")
    assert status == 429 and body["code"] == 10090

    assert api.get("/v1/health", REMOTE_ADDR="198.51.100.2")[0] == 200


def test_one_ipv6_client_is_counted_per_64_network(api, db, clock, limits):
    limits(health=1)
    assert api.get("/v1/health", REMOTE_ADDR="2001:db8:1:2::10")[0] == 200
    assert api.get("/v1/health", REMOTE_ADDR="2001:db8:1:2::11")[0] == 429
    assert api.get("/v1/health", REMOTE_ADDR="2001:db8:1:3::10")[0] == 200


def test_headers_count_down_on_every_answer(api, alice, clock):
    seen = []
    for _ in range(3):
        status, _, response = api.get(PING, auth=alice.key_auth)
        assert status == 200
        seen.append(
            (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"], int(response["X-RateLimit-Reset"]))
        )
    reset = seen[0][2]
    assert 1 <= reset <= 60
    assert seen == [("300", "299", reset), ("300", "298", reset), ("300", "297", reset)]

    # Errors after the count carry them too (a 404 from the view here).
    status, body, response = api.get("/v1/api-keys/6d7a2d56-0f5e-4c8e-9a4f-1b2c3d4e5f60", auth=alice.jwt_auth)
    assert status == 404 and body["code"] == 10040
    assert response["X-RateLimit-Remaining"] == "299"  # the JWT is another budget


def test_a_per_key_override_from_django_admin_applies_at_once(api, client, alice, admin_user, clock):
    key = ApiKey.objects.get(owner=alice.user)
    for _ in range(5):
        assert complete(api, alice.key_auth)[0] == 200

    client.force_login(admin_user)
    response = client.post(
        f"/admin/accounts/apikey/{key.pk}/change/",
        {
            "name": key.name,
            "expires_at_0": "",
            "expires_at_1": "",
            "completions_per_minute": "3",
            "uploads_per_minute": "",
            "default_per_minute": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    key.refresh_from_db()
    assert key.completions_per_minute == 3
    client.logout()

    # The next request already sees the new ceiling. django-ratelimit keys its
    # counter by the rate too, so the new ceiling starts a fresh count (docs).
    statuses = []
    for _ in range(4):
        status, body, response = complete(api, alice.key_auth)
        statuses.append((status, response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]))
    assert statuses == [(200, "3", "2"), (200, "3", "1"), (200, "3", "0"), (429, "3", "0")]
    assert body["message"] == "Rate limit for completions exceeded: 3 requests per minute."

    # Other families keep the deployment default.
    assert api.get(PING, auth=alice.key_auth)[2]["X-RateLimit-Limit"] == "300"


def test_a_zero_override_blocks_the_family_for_that_key(api, alice, clock):
    ApiKey.objects.filter(owner=alice.user).update(uploads_per_minute=0)
    status, body, response = upload(api, alice.key_auth)
    assert status == 429
    assert body["message"] == "Rate limit for uploads exceeded: 0 requests per minute."
    assert int(response["Retry-After"]) >= 1


def test_inbound_webhook_calls_are_counted_per_webhook(api, db, clock, limits):
    limits(webhook=2)
    first = "/v1/integrations/webhooks/4f1d2c3b-0000-4000-8000-000000000001/events"
    second = "/v1/integrations/webhooks/4f1d2c3b-0000-4000-8000-000000000002/events"
    assert api.post(first, {}, REMOTE_ADDR="198.51.100.1")[0] == 202
    assert api.post(first, {}, REMOTE_ADDR="198.51.100.2")[0] == 202
    status, body, _ = api.post(first, {}, REMOTE_ADDR="198.51.100.3")
    assert status == 429
    assert body["message"] == "Rate limit for webhook exceeded: 2 requests per minute."

    assert api.post(second, {}, REMOTE_ADDR="198.51.100.1")[0] == 202


def test_the_webhook_family_defaults_to_the_default_ceiling(settings):
    from combo.settings import RATE_LIMITS

    assert RATE_LIMITS["webhook"] == RATE_LIMITS["default"] == 300
    assert RATE_LIMITS["completions"] == 60
    assert RATE_LIMITS["uploads"] == 10
    assert RATE_LIMITS["login"] == 10
