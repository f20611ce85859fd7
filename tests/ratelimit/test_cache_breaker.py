"""A cache that hangs costs one request its timeout, not every request (combo.cachebreaker).

The cache here is a real TCP server that accepts connections and never
answers, as a hung or black-holed Redis does; django-redis waits out its
socket timeout on each call. The working cache that comes back is LocMemCache,
and the real Redis at COMBO_TEST_REDIS_URL (default redis://127.0.0.1:6379/11;
keys under a prefix of the test's own, removed afterwards) when one answers;
skipped, with the reason printed, when none does.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
import uuid

import pytest
from django.core.cache import cache

from accounts import keycache, keys, services
from accounts.models import ApiKey
from combo import ratelimit
from combo.cachebreaker import cache_breaker
from combo.errors import ErrorCode
from tests.ratelimit.conftest import PING

pytestmark = [pytest.mark.urls("tests.ratelimit.urls"), pytest.mark.django_db]

SOCKET_TIMEOUT = 0.5
FAST = SOCKET_TIMEOUT / 2  # a request that asked the hung cache takes at least SOCKET_TIMEOUT
PASSWORD = "hung-cache-password"
REDIS_URL = os.environ.get("COMBO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


class HungServer:
    """Accepts TCP connections, reads what is sent, never answers; counts the bytes it got."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.received = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for event, _ in self._selector.select(timeout=0.05):
                sock = event.fileobj
                if sock is self._listener:
                    connection, _ = self._listener.accept()
                    connection.setblocking(False)
                    self._selector.register(connection, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.received += len(data)
                else:
                    self._selector.unregister(sock)
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


def redis_cache(location: str) -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": SOCKET_TIMEOUT, "SOCKET_TIMEOUT": SOCKET_TIMEOUT},
        }
    }


LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "breaker"}}


@pytest.fixture
def hung_cache(settings):
    """The cache is a hung Redis (its URL carrying a password, as production's may); the key cache on, as with Redis."""
    server = HungServer()
    settings.CACHES = redis_cache(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0")
    settings.API_KEY_CACHE_SECONDS = 60
    yield server
    server.close()


@pytest.fixture(params=["locmem", "redis"])
def working_cache(request):
    """CACHES of a cache that answers."""
    if request.param == "locmem":
        yield LOCMEM
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    prefix = f"breaker-test-{uuid.uuid4().hex}"
    caches = redis_cache(REDIS_URL)
    caches["default"]["KEY_PREFIX"] = prefix
    yield caches
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def timed(call, *args, **kwargs):
    """(seconds taken, what `call` returned)."""
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return time.perf_counter() - started, result


def test_a_hung_cache_costs_one_request_its_timeout_not_every_request(api, alice, hung_cache, caplog):
    caplog.set_level(logging.DEBUG)
    seconds, (status, body, response) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 200, body
    assert seconds >= SOCKET_TIMEOUT  # it did wait for the cache
    assert "X-RateLimit-Limit" not in response
    asked = hung_cache.received
    assert asked > 0

    for _ in range(5):
        seconds, (status, body, response) = timed(api.get, PING, auth=alice.key_auth)
        assert status == 200 and body["data"] == {"pong": True}
        assert seconds < FAST
        assert "X-RateLimit-Limit" not in response and "X-RateLimit-Remaining" not in response
    assert hung_cache.received == asked  # not asked again

    warnings = [r for r in caplog.records if r.name == "combo.ratelimit"]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "rate-limit cache unavailable (TimeoutError: Timeout reading from socket); "
        "serving requests without limits (fail-open)"
    )
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


def test_failing_closed_the_requests_after_a_hung_call_are_refused_at_once(api, alice, hung_cache, settings):
    settings.RATE_LIMIT_FAIL_OPEN = False
    status, body, _ = api.get(PING, auth=alice.key_auth)
    assert (status, body["code"]) == (503, 20003)
    asked = hung_cache.received
    for _ in range(3):
        seconds, (status, body, response) = timed(api.get, PING, auth=alice.key_auth)
        assert (status, body["code"]) == (503, 20003)
        assert body["message"] == "The rate-limit store is unavailable."
        assert seconds < FAST
        assert "X-RateLimit-Limit" not in response
    assert hung_cache.received == asked


def test_the_stream_paths_batch_skips_a_hung_cache_too(hung_cache, settings):
    callers = [(None, "203.0.113.7"), (None, "203.0.113.8")]
    seconds, outcomes = timed(ratelimit.check_many, ratelimit.COMPLETIONS, callers)
    assert outcomes == [None, None] and seconds >= SOCKET_TIMEOUT
    seconds, outcomes = timed(ratelimit.check_many, ratelimit.COMPLETIONS, callers)
    assert outcomes == [None, None] and seconds < FAST

    settings.RATE_LIMIT_FAIL_OPEN = False
    seconds, outcomes = timed(ratelimit.check_many, ratelimit.COMPLETIONS, callers)
    assert seconds < FAST
    assert [outcome.error for outcome in outcomes] == [ErrorCode.RATE_LIMIT_BACKEND_DOWN] * 2


def test_after_the_retry_time_a_still_hung_cache_is_tried_again(api, alice, hung_cache, settings):
    settings.COMBO_CACHE_RETRY_SECONDS = 1
    assert api.get(PING, auth=alice.key_auth)[0] == 200
    asked = hung_cache.received
    seconds, (status, _, _) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 200 and seconds < FAST and hung_cache.received == asked

    time.sleep(1.1)
    seconds, (status, _, response) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 200 and "X-RateLimit-Limit" not in response
    assert seconds >= SOCKET_TIMEOUT and hung_cache.received > asked  # tried, failed: open again
    asked = hung_cache.received
    seconds, (status, _, _) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 200 and seconds < FAST and hung_cache.received == asked


def test_once_the_cache_answers_again_limits_count_again(api, alice, hung_cache, working_cache, settings, limits,
                                                          caplog):
    caplog.set_level(logging.INFO)
    limits(default=5)
    settings.COMBO_CACHE_RETRY_SECONDS = 1
    assert api.get(PING, auth=alice.key_auth)[0] == 200  # the hung cache fails: the breaker opens

    settings.CACHES = working_cache
    status, _, response = api.get(PING, auth=alice.key_auth)
    assert status == 200 and "X-RateLimit-Limit" not in response  # still skipped until the retry time

    time.sleep(1.1)
    status, _, response = api.get(PING, auth=alice.key_auth)
    assert status == 200
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("5", "4")
    status, _, response = api.get(PING, auth=alice.key_auth)
    assert response["X-RateLimit-Remaining"] == "3"

    back = [r for r in caplog.records if "rate-limit cache is back" in r.getMessage()]
    assert len(back) == 1 and back[0].name == "combo.ratelimit" and back[0].levelno == logging.INFO
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


def test_the_health_check_always_asks_the_cache_and_can_close_the_breaker(api, alice, hung_cache, working_cache,
                                                                          settings):
    assert api.get(PING, auth=alice.key_auth)[0] == 200  # the breaker opens for 10 s
    asked = hung_cache.received
    status, body, _ = api.get("/v1/health")
    assert (status, body["code"]) == (503, 20002)
    assert body["data"]["checks"]["cache"] == {"ok": False, "error": "TimeoutError"}
    assert hung_cache.received > asked  # really asked, breaker open or not
    asked = hung_cache.received
    seconds, (status, _, response) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 200 and seconds < FAST and "X-RateLimit-Limit" not in response
    assert hung_cache.received == asked

    settings.CACHES = working_cache
    status, body, _ = api.get("/v1/health")
    assert status == 200 and body["data"]["checks"]["cache"]["ok"] is True
    status, _, response = api.get(PING, auth=alice.key_auth)  # well within the 10 s
    assert status == 200 and "X-RateLimit-Limit" in response


def test_revoking_a_key_reaches_the_cache_while_its_breaker_is_open(api, alice, hung_cache, working_cache, settings):
    hung = settings.CACHES
    settings.CACHES = working_cache
    assert api.get(PING, auth=alice.key_auth)[0] == 200
    entry = keycache._cache_key(keys.visible_prefix(alice.api_key))
    assert cache.get(entry) is not None  # alice's key is cached

    settings.CACHES = hung
    assert api.get(PING, auth=alice.key_auth)[0] == 200  # the breaker opens
    settings.CACHES = working_cache
    status, _, response = api.get(PING, auth=alice.key_auth)
    assert status == 200 and "X-RateLimit-Limit" not in response  # open: the cache is skipped

    key = ApiKey.objects.get(owner=alice.user)
    assert api.delete(f"/v1/api-keys/{key.id}", auth=alice.jwt_auth)[0] == 200
    assert cache.get(entry) is None  # dropped all the same
    assert api.get(PING, auth=alice.key_auth)[0] == 401


def test_revoking_a_key_tries_even_a_hung_cache_and_the_breaker_stays_open(api, alice, hung_cache, caplog):
    assert api.get(PING, auth=alice.key_auth)[0] == 200  # the breaker opens
    asked = hung_cache.received
    seconds, _ = timed(services.api_key_revoke, api_key=ApiKey.objects.get(owner=alice.user))
    assert seconds >= SOCKET_TIMEOUT and hung_cache.received > asked
    assert "could not drop cached API keys (TimeoutError)" in caplog.text

    asked = hung_cache.received
    seconds, (status, _, _) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 401 and seconds < FAST and hung_cache.received == asked


def test_zero_seconds_turns_the_breaker_off(api, alice, hung_cache, settings):
    settings.COMBO_CACHE_RETRY_SECONDS = 0
    assert api.get(PING, auth=alice.key_auth)[0] == 200
    assert not cache_breaker.is_open
    asked = hung_cache.received
    seconds, (status, _, _) = timed(api.get, PING, auth=alice.key_auth)
    assert status == 200
    assert seconds >= SOCKET_TIMEOUT and hung_cache.received > asked  # every request asks the cache


def test_after_the_retry_time_one_caller_at_a_time_tries_the_cache(settings):
    settings.COMBO_CACHE_RETRY_SECONDS = 1
    cache_breaker.failed(TimeoutError("Timeout reading from socket"))
    assert not cache_breaker.allow()
    time.sleep(1.05)

    callers = 16
    start = threading.Barrier(callers)
    answers: list[bool] = []

    def caller() -> None:
        start.wait()
        answers.append(cache_breaker.allow())

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False] * (callers - 1) + [True]

    cache_breaker.succeeded()  # the probe answered
    assert cache_breaker.allow() and not cache_breaker.is_open
