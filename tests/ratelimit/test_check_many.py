"""ratelimit.check_many: a batch spends the very counters `check` spends (on Redis in one round trip).

The Redis tests use COMBO_TEST_REDIS_URL's database 12 (flushed before and
after) and are skipped, with the reason printed, when no Redis answers.
"""

from __future__ import annotations

import logging
import os

import pytest
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache

from accounts.services import authenticate_bearer
from combo import ratelimit
from combo.errors import ErrorCode
from tests.ratelimit.test_cache_down import DEAD_REDIS

pytestmark = pytest.mark.django_db

REDIS_URL = os.environ.get("COMBO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11").rsplit("/", 1)[0] + "/12"


@pytest.fixture
def redis_cache(settings):
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
    assert ratelimit._redis_client() is not None  # the pipelined path, not the fallback
    yield client
    client.flushdb()


def spent(outcomes) -> list[tuple[bool, int]]:
    return [(d.allowed, d.remaining) for d in outcomes]


IN_PROCESS = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(params=["redis", "in-process"])
def counters(request, settings):
    """The cache the counters live in: Redis (the pipelined path; its client) or the in-process one (None)."""
    if request.param == "redis":
        return request.getfixturevalue("redis_cache")
    settings.CACHES = IN_PROCESS
    assert ratelimit._redis_client() is None  # the embedded in-process cache: one incr per counter
    return None


def test_a_batch_and_single_checks_spend_one_budget_window_by_window(alice, bob, clock, limits, counters):
    limits(completions=4)
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    b = authenticate_bearer(f"Bearer {bob.api_key}")
    assert ratelimit.check_many(ratelimit.COMPLETIONS, []) == []

    first = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (first.allowed, first.remaining) == (True, 3)
    batch = ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (b, ""), (a, ""), (a, ""), (a, "")])
    # In order within the batch; bob's key has a budget of its own.
    assert spent(batch) == [(True, 2), (True, 3), (True, 1), (True, 0), (False, 0)]
    refused = batch[-1]
    assert 1 <= refused.retry_after <= ratelimit.WINDOW_SECONDS and refused.reset == first.reset
    assert refused.error().error == ErrorCode.RATE_LIMITED
    again = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (again.allowed, again.remaining, again.reset) == (False, 0, first.reset)
    bobs = ratelimit.check(ratelimit.COMPLETIONS, principal=b)
    assert (bobs.allowed, bobs.remaining) == (True, 2)

    if counters is not None:
        # The counters are django-ratelimit's keys, each expiring with its window (+ its 5 s of slack).
        keys = counters.keys("*:rl:*")  # django-ratelimit's prefix (API keys may be cached beside them)
        assert len(keys) == 2
        for key in keys:
            assert 0 < counters.ttl(key) <= ratelimit.WINDOW_SECONDS + 5

    clock.shift(ratelimit.WINDOW_SECONDS)  # a new window: the batch starts its counter, check goes on with it
    assert spent(ratelimit.check_many(ratelimit.COMPLETIONS, [(a, "")])) == [(True, 3)]
    later = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (later.allowed, later.remaining) == (True, 2)


class BrokenCache(LocMemCache):
    """An in-process cache whose counters cannot be reached (as a cache server that is down)."""

    def incr(self, key, delta=1, version=None):
        raise ConnectionError("cache down")

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        raise ConnectionError("cache down")


@pytest.mark.parametrize(
    "caches", [DEAD_REDIS, {"default": {"BACKEND": "tests.ratelimit.test_check_many.BrokenCache"}}],
    ids=["redis", "in-process"],
)
def test_with_the_cache_down_a_batch_fails_open_or_closed_like_check(alice, settings, caplog, caches):
    settings.CACHES = caches
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    with caplog.at_level(logging.WARNING, logger="combo.ratelimit"):
        assert ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (a, "")]) == [None, None]
    assert "rate-limit cache unavailable" in caplog.text

    settings.RATE_LIMIT_FAIL_OPEN = False
    outcomes = ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (a, "")])
    assert [o.error for o in outcomes] == [ErrorCode.RATE_LIMIT_BACKEND_DOWN] * 2


def test_limits_switched_off_count_nothing_in_a_batch(alice, settings, redis_cache):
    settings.RATELIMIT_ENABLE = False
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    assert ratelimit.check_many(ratelimit.COMPLETIONS, [(a, "")]) == [None]
    assert redis_cache.keys("*:rl:*") == []
