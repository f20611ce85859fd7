"""GET /v1/health: database, cache and channel layer, in the envelope; 503 when one is down."""

from __future__ import annotations

from django.core.cache.backends.base import BaseCache
from django.db import connection
from django.test import override_settings

from combo.errors import ErrorCode
from tests.foundation.helpers import assert_error, assert_ok


class BrokenCache(BaseCache):
    """A cache whose server is unreachable."""

    def __init__(self, location, params):
        super().__init__(params)

    def _down(self, *args, **kwargs):
        raise ConnectionError("cache server at 10.0.0.9:6379 refused the connection")

    get = set = add = delete = touch = incr = clear = has_key = get_many = set_many = _down


class ForgetfulCache(BaseCache):
    """A cache that answers but keeps nothing (a full or misconfigured one)."""

    def __init__(self, location, params):
        super().__init__(params)

    def set(self, *args, **kwargs):
        return None

    def get(self, key, default=None, version=None):
        return default

    def delete(self, *args, **kwargs):
        return False


class BrokenChannelLayer:
    """A channel layer whose backend is unreachable."""

    def __init__(self, **kwargs):
        pass

    async def new_channel(self, prefix="specific."):
        raise ConnectionError("channel layer down")


def test_it_reports_every_check_ok_without_credentials(api, db):
    status, body, response = api.get("/v1/health")
    data = assert_ok(status, body, response)
    assert data["status"] == "ok"
    assert set(data["checks"]) == {"database", "cache", "channel_layer"}
    assert all(check["ok"] is True and check["latency_ms"] >= 0 for check in data["checks"].values())
    assert data["database_vendor"] == connection.vendor  # sqlite, or postgresql in the second pass


def test_a_broken_cache_is_a_503_naming_the_cache(api, db):
    with override_settings(CACHES={"default": {"BACKEND": "tests.foundation.test_health.BrokenCache"}}):
        status, body, response = api.get("/v1/health")
    data = assert_error(status, body, response, ErrorCode.SERVICE_UNAVAILABLE)
    assert data["status"] == "degraded"
    assert data["checks"]["cache"] == {"ok": False, "error": "ConnectionError"}
    assert data["checks"]["database"]["ok"] is True
    assert data["checks"]["channel_layer"]["ok"] is True
    assert "cache" in body["message"]
    # The exception's text (hosts, addresses) stays in the server's log.
    assert "10.0.0.9" not in response.content.decode()


def test_a_cache_that_keeps_nothing_is_down_too(api, db):
    with override_settings(CACHES={"default": {"BACKEND": "tests.foundation.test_health.ForgetfulCache"}}):
        status, body, response = api.get("/v1/health")
    data = assert_error(status, body, response, ErrorCode.SERVICE_UNAVAILABLE)
    assert data["checks"]["cache"]["ok"] is False


def test_a_broken_channel_layer_is_a_503_naming_it(api, db):
    layers = {"default": {"BACKEND": "tests.foundation.test_health.BrokenChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        status, body, response = api.get("/v1/health")
    data = assert_error(status, body, response, ErrorCode.SERVICE_UNAVAILABLE)
    assert data["checks"]["channel_layer"] == {"ok": False, "error": "ConnectionError"}
    assert data["checks"]["cache"]["ok"] is True
    assert "channel_layer" in body["message"]
    # The next request, with the real layer back, is healthy again.
    assert api.get("/v1/health")[0] == 200


def test_a_hung_channel_layer_is_down_after_the_health_timeout(api, db, settings):
    """A Redis that accepts and never answers: the check gives up after COMBO_HEALTH_TIMEOUT_SECONDS,
    not after channels-redis's own 5 s receive, and the prober gets its 503 in time."""
    from tests.ratelimit.test_cache_breaker import HungServer, timed

    server = HungServer()
    try:
        settings.COMBO_HEALTH_TIMEOUT_SECONDS = 0.3
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [f"redis://127.0.0.1:{server.port}/0"]},
            }
        }
        took, (status, body, response) = timed(api.get, "/v1/health")
    finally:
        server.close()
    data = assert_error(status, body, response, ErrorCode.SERVICE_UNAVAILABLE)
    assert data["checks"]["channel_layer"] == {"ok": False, "error": "TimeoutError"}
    assert data["checks"]["database"]["ok"] is True
    assert server.received > 0  # the check did reach the hung server
    assert took < 3.0, f"the health check took {took:.1f} s"
