"""The functions the completion stream (a plain ASGI app outside Django) calls."""

from __future__ import annotations

import pytest

from accounts.services import authenticate_bearer
from combo import ratelimit
from combo.api.envelope import error_body
from tests.ratelimit.conftest import COMPLETIONS

pytestmark = [pytest.mark.urls("tests.ratelimit.urls"), pytest.mark.django_db]


def test_the_stream_and_the_api_spend_one_budget(api, alice, clock, limits):
    limits(completions=3)
    assert api.post(COMPLETIONS, {"question": "hi"}, auth=alice.key_auth)[0] == 200
    principal = authenticate_bearer(f"Bearer {alice.api_key}")
    scope = {"type": "http", "client": ("127.0.0.1", 50000), "headers": []}

    decisions = [
        ratelimit.check("completions", principal=principal, client_ip=ratelimit.scope_client_ip(scope))
        for _ in range(3)
    ]

    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 1), (True, 0), (False, 0)]
    refused = decisions[-1]
    assert ratelimit.headers(decisions[0]) == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": str(decisions[0].reset),
    }
    assert ratelimit.headers(refused)["Retry-After"] == str(refused.retry_after)

    # What the stream answers with before any SSE: the same 429 envelope as the API.
    error = refused.error()
    body = error_body(error.error, error.message, "req_test", extra=error.extra)
    assert error.error.status == 429
    assert body == {
        "code": 10090,
        "message": "Rate limit for completions exceeded: 3 requests per minute.",
        "data": {"request_id": "req_test", "family": "completions", "limit": 3, "retry_after": refused.retry_after},
    }
    assert error.headers == ratelimit.headers(refused)

    # And the API sees what the stream spent.
    assert api.post(COMPLETIONS, {"question": "hi"}, auth=alice.key_auth)[0] == 429


async def test_acheck_runs_inside_an_event_loop(alice_principal, clock):
    first = await ratelimit.acheck("completions", principal=alice_principal, client_ip="127.0.0.1")
    second = await ratelimit.acheck("completions", principal=alice_principal, client_ip="127.0.0.1")
    assert first.allowed and first.limit == 60 and first.remaining == 59
    assert second.remaining == 58
    assert 1 <= second.reset <= 60


async def test_acheck_fails_open_when_the_cache_is_down(alice_principal, settings):
    from tests.ratelimit.test_cache_down import DEAD_REDIS

    settings.CACHES = DEAD_REDIS
    assert await ratelimit.acheck("completions", principal=alice_principal, client_ip="127.0.0.1") is None
    assert ratelimit.headers(None) == {}


@pytest.fixture
def alice_principal(alice):
    return authenticate_bearer(f"Bearer {alice.api_key}")
