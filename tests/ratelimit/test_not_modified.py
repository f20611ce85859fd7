"""A 304 Not Modified does not count against the rate limit: its unit is given back.

Run on the in-process cache here, and on Redis by tests/production_suite.py
(REDIS_URL): the counters are whichever cache the settings name.
"""

from __future__ import annotations

import threading

import pytest
from django.core.cache import caches

from accounts.services import authenticate_bearer
from combo import ratelimit

pytestmark = pytest.mark.django_db

AGENTS = "/v1/combo/agents"


def _counter(decision: ratelimit.Decision) -> str:
    (key,) = decision.spent
    return key


def _expiry(key: str) -> float:
    """When the counter expires (Redis: its TTL; the in-process cache: its deadline), to see it is never extended."""
    cache = caches["default"]
    if hasattr(cache, "ttl"):  # django-redis
        return cache.ttl(key)
    return cache._expire_info[cache.make_key(key)]


def test_polling_with_if_none_match_spends_nothing_and_never_meets_a_429(api, alice, clock, limits):
    limits(default=3)
    status, body, response = api.post(AGENTS, {"name": "Reviewer"}, auth=alice.key_auth)
    assert status == 201 and response["X-RateLimit-Remaining"] == "2"
    path = f"{AGENTS}/{body['data']['id']}"
    status, _, read = api.get(path, auth=alice.key_auth)
    assert status == 200 and read["X-RateLimit-Remaining"] == "1"

    for _ in range(10):  # three times the ceiling, in one window
        status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=read["ETag"])
        assert (status, body) == (304, None)
        # The budget as it was before the request: the 304 did not spend from it.
        assert response["X-RateLimit-Remaining"] == "1" and response["X-RateLimit-Limit"] == "3"
        assert response["X-RateLimit-Reset"] == read["X-RateLimit-Reset"] and "Retry-After" not in response

    # A 200 still counts, the one after it is the last of the budget.
    status, _, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH='"stale"')
    assert status == 200 and response["X-RateLimit-Remaining"] == "0"


def test_with_the_budget_spent_a_conditional_read_is_refused_with_a_429(api, alice, clock, limits):
    limits(default=2)
    _, body, _ = api.post(AGENTS, {"name": "Reviewer"}, auth=alice.key_auth)
    path = f"{AGENTS}/{body['data']['id']}"
    _, _, read = api.get(path, auth=alice.key_auth)
    assert read["X-RateLimit-Remaining"] == "0"

    # The limit is checked before the object is read: the 429 wins, and spends as any 429 does.
    for _ in range(2):
        status, body, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=read["ETag"])
        assert (status, body["code"]) == (429, 10090)
        assert response["X-RateLimit-Remaining"] == "0" and int(response["Retry-After"]) >= 1

    clock.shift(int(response["Retry-After"]))  # a new window: polling goes on for free
    for _ in range(3):
        status, _, response = api.get(path, auth=alice.key_auth, HTTP_IF_NONE_MATCH=read["ETag"])
        assert status == 304 and response["X-RateLimit-Remaining"] == "2"


def test_a_refund_goes_to_the_window_it_was_spent_in_and_keeps_its_expiry(alice, clock, limits):
    limits(default=5)
    principal = authenticate_bearer(f"Bearer {alice.api_key}")
    spent = ratelimit.check(ratelimit.DEFAULT, principal=principal)
    assert spent.remaining == 4
    ratelimit.check(ratelimit.DEFAULT, principal=principal)
    expires = _expiry(_counter(spent))

    refunded = ratelimit.refund(spent)
    assert (refunded.allowed, refunded.remaining, refunded.reset) == (True, 5, spent.reset)
    assert _expiry(_counter(spent)) <= expires  # not extended
    assert ratelimit.check(ratelimit.DEFAULT, principal=principal).remaining == 3

    # Answered once the next window had begun: that window's counter is not touched.
    late = ratelimit.check(ratelimit.DEFAULT, principal=principal)
    clock.shift(late.reset)
    assert ratelimit.check(ratelimit.DEFAULT, principal=principal).remaining == 4
    ratelimit.refund(late)
    assert ratelimit.check(ratelimit.DEFAULT, principal=principal).remaining == 3


def test_a_refund_never_takes_a_counter_below_zero(alice, clock, limits):
    limits(default=5)
    principal = authenticate_bearer(f"Bearer {alice.api_key}")
    spent = ratelimit.check(ratelimit.DEFAULT, principal=principal)
    assert ratelimit.refund(ratelimit.refund(spent)).remaining == 5  # nothing left to give the second time
    for _ in range(3):  # the same unit given back again and again: the counter stops at zero
        ratelimit.refund(spent)
    assert ratelimit.check(ratelimit.DEFAULT, principal=principal).remaining == 4

    caches["default"].clear()  # the counter is gone (expired, evicted): nothing to give back, nothing made
    ratelimit.refund(spent)
    assert ratelimit.check(ratelimit.DEFAULT, principal=principal).remaining == 4


def test_refused_and_uncounted_requests_get_nothing_back(alice, clock, limits, settings):
    limits(default=1)
    principal = authenticate_bearer(f"Bearer {alice.api_key}")
    ratelimit.check(ratelimit.DEFAULT, principal=principal)
    refused = ratelimit.check(ratelimit.DEFAULT, principal=principal)
    assert not refused.allowed and ratelimit.refund(refused) is refused
    assert not ratelimit.check(ratelimit.DEFAULT, principal=principal).allowed
    assert ratelimit.refund(None) is None


def test_concurrent_spends_and_refunds_leave_the_exact_count(alice, clock, limits):
    limits(default=1000)
    principal = authenticate_bearer(f"Bearer {alice.api_key}")
    errors: list[BaseException] = []

    def poll(times: int, gives_back: bool) -> None:
        try:
            for _ in range(times):
                decision = ratelimit.check(ratelimit.DEFAULT, principal=principal)
                if gives_back:
                    ratelimit.refund(decision)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=poll, args=(25, n % 2 == 0)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # 4 threads kept their 25 units each, 4 gave every one back.
    assert ratelimit.check(ratelimit.DEFAULT, principal=principal).remaining == 1000 - 100 - 1
