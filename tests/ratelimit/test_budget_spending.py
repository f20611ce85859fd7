"""When a request spends budget: after authentication and permissions, before the handler."""

from __future__ import annotations

import pytest

from tests.ratelimit.conftest import COMPLETIONS, PING

pytestmark = [pytest.mark.urls("tests.ratelimit.urls"), pytest.mark.django_db]


def test_a_rejected_credential_spends_nothing_and_shows_no_budget(api, alice, clock):
    for auth in ({"HTTP_AUTHORIZATION": "Bearer ragflow-not-a-real-key"}, {"HTTP_AUTHORIZATION": "Bearer x.y.z"}, {}):
        for _ in range(3):
            status, body, response = api.get(PING, auth=auth)
            assert status == 401, body
            assert "X-RateLimit-Remaining" not in response

    # Neither this address's budget nor alice's was touched.
    assert api.get("/v1/health")[2]["X-RateLimit-Remaining"] == "1199"
    assert api.get(PING, auth=alice.key_auth)[2]["X-RateLimit-Remaining"] == "299"


def test_a_forbidden_call_spends_nothing(api, alice, clock):
    # /v1/api-keys takes a JWT only: an API key is refused by the permission check.
    for _ in range(3):
        status, body, response = api.get("/v1/api-keys", auth=alice.key_auth)
        assert status == 403 and body["code"] == 10031
        assert "X-RateLimit-Remaining" not in response

    assert api.get(PING, auth=alice.key_auth)[2]["X-RateLimit-Remaining"] == "299"


def test_a_request_that_fails_validation_in_the_view_has_spent_its_request(api, alice, clock):
    status, body, response = api.post(COMPLETIONS, {}, auth=alice.key_auth)
    assert status == 400 and body["code"] == 10001
    assert response["X-RateLimit-Remaining"] == "59"

    status, _, response = api.post(COMPLETIONS, {"question": "hi"}, auth=alice.key_auth)
    assert status == 200 and response["X-RateLimit-Remaining"] == "58"


def test_an_oversized_body_refused_before_any_view_spends_nothing(api, alice, clock, settings):
    status, body, response = api.post(
        COMPLETIONS, raw=b"{" + b" " * (settings.API_MAX_JSON_BYTES + 1) + b"}", auth=alice.key_auth
    )
    assert status == 413 and body["code"] == 10070
    status, _, response = api.post(COMPLETIONS, {"question": "hi"}, auth=alice.key_auth)
    assert response["X-RateLimit-Remaining"] == "59"


def test_a_refused_request_still_answers_with_the_envelope_and_headers(api, alice, clock, limits):
    limits(default=1)
    api.get(PING, auth=alice.key_auth)
    status, body, response = api.get(PING, auth=alice.key_auth)
    assert status == 429
    assert response["Content-Type"].startswith("application/json")
    assert set(body) == {"code", "message", "data"}
    assert response["X-Request-Id"] == body["data"]["request_id"]
    assert {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers)


def test_pages_outside_v1_are_not_counted(client, db, clock):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response
