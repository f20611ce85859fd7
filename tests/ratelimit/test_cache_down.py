"""The rate-limit cache being down is never a 500: fail-open by default (logged), 503 if chosen."""

from __future__ import annotations

import logging

import pytest
from django.core.cache.backends.locmem import LocMemCache

from tests.ratelimit.conftest import COMPLETIONS, PING

pytestmark = [pytest.mark.urls("tests.ratelimit.urls"), pytest.mark.django_db]

# Nothing listens on port 1: every Redis call is refused at once.
DEAD_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
}


@pytest.fixture
def redis_down(settings):
    # Django's setting_changed handler rebuilds `caches` for the new CACHES.
    settings.CACHES = DEAD_REDIS


def test_with_redis_down_requests_are_served_without_limits_and_logged_once(api, alice, redis_down, caplog):
    caplog.set_level(logging.WARNING, logger="combo.ratelimit")
    for _ in range(3):
        status, body, response = api.post(COMPLETIONS, {"question": "hi"}, auth=alice.key_auth)
        assert status == 200, body
        assert "X-RateLimit-Limit" not in response
        assert "X-RateLimit-Remaining" not in response

    warnings = [r for r in caplog.records if r.name == "combo.ratelimit"]
    assert len(warnings) == 1
    assert "rate-limit cache unavailable (ConnectionError" in warnings[0].getMessage()
    assert "fail-open" in warnings[0].getMessage()


def test_the_login_limit_fails_open_too(api, alice, redis_down):
    status, body, _ = api.post("/v1/auth/token", {"username": "alice", "password": "correct horse battery"})
    assert status == 200 and body["data"]["access"]


def test_with_fail_closed_chosen_requests_are_refused_with_503(api, alice, redis_down, settings, caplog):
    settings.RATE_LIMIT_FAIL_OPEN = False
    caplog.set_level(logging.WARNING, logger="combo.ratelimit")
    status, body, response = api.get(PING, auth=alice.key_auth)
    assert status == 503
    assert body["code"] == 20003
    assert body["message"] == "The rate-limit store is unavailable."
    assert body["data"]["request_id"] == response["X-Request-Id"]
    (warning,) = [r for r in caplog.records if r.name == "combo.ratelimit"]
    assert "fail-closed" in warning.getMessage()


def test_failing_closed_the_health_check_still_says_what_is_down(api, redis_down, settings):
    settings.RATE_LIMIT_FAIL_OPEN = False
    status, body, response = api.get("/v1/health")
    assert (status, body["code"]) == (503, 20002)  # its own answer, not the limiter's 20003
    assert body["data"]["checks"]["cache"]["ok"] is False and body["data"]["checks"]["database"]["ok"] is True
    assert "X-RateLimit-Remaining" not in response  # nothing could be counted


@pytest.fixture
def locmem(settings):
    """These tests break LocMemCache's methods, so they need it whatever REDIS_URL says."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "x"}}


def test_any_cache_error_is_handled_not_only_redis_ones(api, alice, monkeypatch, locmem):
    def broken(self, *args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(LocMemCache, "add", broken)
    status, body, response = api.get(PING, auth=alice.key_auth)
    assert status == 200 and body["data"] == {"pong": True}
    assert "X-RateLimit-Limit" not in response


def test_a_cache_that_swallows_errors_is_caught_too(api, alice, monkeypatch, locmem):
    # django-redis with IGNORE_EXCEPTIONS answers None instead of raising;
    # django-ratelimit then reports a count it never got (time_left -1).
    monkeypatch.setattr(LocMemCache, "add", lambda self, *a, **k: None)
    monkeypatch.setattr(LocMemCache, "incr", lambda self, *a, **k: None)
    status, _, response = api.get(PING, auth=alice.key_auth)
    assert status == 200
    assert "X-RateLimit-Limit" not in response


def test_limits_switched_off_count_nothing(api, alice, settings):
    settings.RATELIMIT_ENABLE = False
    status, _, response = api.get(PING, auth=alice.key_auth)
    assert status == 200 and "X-RateLimit-Limit" not in response
