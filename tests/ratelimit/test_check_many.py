"""ratelimit.check_many: a batch of requests spends the very counters `check` spends, in one round trip to Redis.

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


def test_on_redis_a_batch_and_single_checks_spend_one_budget(alice, bob, clock, limits, redis_cache):
    limits(completions=4)
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    b = authenticate_bearer(f"Bearer {bob.api_key}")

    first = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (first.allowed, first.remaining) == (True, 3)
    batch = ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (b, ""), (a, ""), (a, ""), (a, "")])
    # In order within the batch; bob's key has a budget of its own.
    assert spent(batch) == [(True, 2), (True, 3), (True, 1), (True, 0), (False, 0)]
    refused = batch[-1]
    assert 1 <= refused.retry_after <= ratelimit.WINDOW_SECONDS
    assert refused.error().error == ErrorCode.RATE_LIMITED
    again = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (again.allowed, again.remaining, again.reset) == (False, 0, first.reset)

    # The counters are django-ratelimit's keys, each expiring with its window (+ its 5 s of slack).
    keys = redis_cache.keys("*:rl:*")  # django-ratelimit's prefix (API keys may be cached beside them)
    assert len(keys) == 2
    for key in keys:
        assert 0 < redis_cache.ttl(key) <= ratelimit.WINDOW_SECONDS + 5


def test_on_redis_a_new_window_starts_a_new_count(alice, clock, limits, redis_cache):
    limits(completions=2)
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    assert spent(ratelimit.check_many(ratelimit.COMPLETIONS, [(a, "")] * 3)) == [(True, 1), (True, 0), (False, 0)]
    clock.shift(ratelimit.WINDOW_SECONDS)
    assert spent(ratelimit.check_many(ratelimit.COMPLETIONS, [(a, "")])) == [(True, 1)]


def test_without_redis_each_request_is_checked_in_turn(alice, clock, limits, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    limits(completions=2)
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    assert ratelimit._redis_client() is None  # the embedded in-process cache
    assert spent(ratelimit.check_many(ratelimit.COMPLETIONS, [(a, "")] * 3)) == [(True, 1), (True, 0), (False, 0)]
    assert ratelimit.check_many(ratelimit.COMPLETIONS, []) == []


def test_in_process_a_batch_and_single_checks_spend_one_budget_window_by_window(alice, bob, clock, limits, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    limits(completions=4)
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    b = authenticate_bearer(f"Bearer {bob.api_key}")

    first = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (first.allowed, first.remaining) == (True, 3)
    batch = ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (b, ""), (a, ""), (a, ""), (a, "")])
    assert spent(batch) == [(True, 2), (True, 3), (True, 1), (True, 0), (False, 0)]
    assert batch[-1].reset == first.reset
    again = ratelimit.check(ratelimit.COMPLETIONS, principal=b)
    assert (again.allowed, again.remaining) == (True, 2)

    clock.shift(ratelimit.WINDOW_SECONDS)  # a new window: the batch starts its counter, check goes on with it
    assert spent(ratelimit.check_many(ratelimit.COMPLETIONS, [(a, "")])) == [(True, 3)]
    later = ratelimit.check(ratelimit.COMPLETIONS, principal=a)
    assert (later.allowed, later.remaining) == (True, 2)


def test_with_redis_down_a_batch_fails_open_or_closed_like_check(alice, settings, caplog):
    settings.CACHES = DEAD_REDIS
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


class BrokenCache(LocMemCache):
    """An in-process cache whose counters cannot be reached (as a cache server that is down)."""

    def incr(self, key, delta=1, version=None):
        raise ConnectionError("cache down")

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        raise ConnectionError("cache down")


def test_with_another_cache_down_a_batch_fails_open_or_closed_like_check(alice, settings, caplog):
    settings.CACHES = {"default": {"BACKEND": "tests.ratelimit.test_check_many.BrokenCache"}}
    a = authenticate_bearer(f"Bearer {alice.api_key}")
    assert ratelimit._redis_client() is None
    with caplog.at_level(logging.WARNING, logger="combo.ratelimit"):
        assert ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (a, "")]) == [None, None]
    assert "rate-limit cache unavailable" in caplog.text

    settings.RATE_LIMIT_FAIL_OPEN = False
    outcomes = ratelimit.check_many(ratelimit.COMPLETIONS, [(a, ""), (a, "")])
    assert [o.error for o in outcomes] == [ErrorCode.RATE_LIMIT_BACKEND_DOWN] * 2
