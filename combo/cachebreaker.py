"""A circuit breaker for the shared cache: after a failure, stop asking for a while.

The rate limiter (combo.ratelimit) and the API-key cache (accounts.keycache)
both carry on without the cache: limits fail open (or closed, by choice) and
keys are read from the database. A Redis that refuses connections fails at
once, so that costs nothing. A Redis that accepts connections and never
answers (hung, or its packets dropped) is worse: every cache call waits out
django-redis's socket timeout (1 s with REDIS_URL), and a request makes
several calls (key read, rate-limit count, key write), so each one took
seconds and the service was down in all but name.

So after any cache call fails, those callers skip the cache for
COMBO_CACHE_RETRY_SECONDS and do what they do on a failure. When that time is
up, the next caller tries the cache again (one caller per period: the others
keep skipping meanwhile); a success closes the breaker, a failure opens it for
another period. 0 turns the breaker off: every call tries the cache.

Revoking a key (`keycache.forget`) and the health check always try the cache
whatever the breaker says, and report what they found to it.

One breaker per process, shared by its threads. Closed, `allow()` reads one
attribute.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

# The logger of the "rate-limit cache unavailable" warnings this one's "back" answers.
logger = logging.getLogger("combo.ratelimit")


def describe(exc: BaseException) -> str:
    """An error as the logs show it: type and message (redis-py's name the host and port, not the password)."""
    return f"{type(exc).__name__}: {exc}"


class CacheBreaker:
    """Closed (the cache is asked) or open until a retry time (it is not); see the module docstring."""

    def __init__(self) -> None:
        self._retry_at: float | None = None  # time.monotonic() of the next try; None: closed
        self._opened_at = 0.0  # time.monotonic() of the failure that opened it
        self._lock = threading.Lock()
        self.last_error = ""  # describe() of the latest failure
        self.failures = 0  # cache calls that failed in this process, ever (accounts.keycache reads it)

    @property
    def is_open(self) -> bool:
        return self._retry_at is not None

    def allow(self) -> bool:
        """May the caller use the cache now? Closed: yes. Open: no, until the retry time,
        then yes for one caller (its call is the probe, to be reported as usual)."""
        retry_at = self._retry_at
        if retry_at is None:
            return True
        now = time.monotonic()
        if now < retry_at:
            return False
        with self._lock:
            if self._retry_at is None:
                return True
            if now < self._retry_at:
                return False  # another caller is probing
            # This caller probes; the others skip for another period, or until it reports.
            self._retry_at = now + settings.COMBO_CACHE_RETRY_SECONDS
            return True

    def failed(self, exc: BaseException) -> None:
        """A cache call failed: skip the cache for COMBO_CACHE_RETRY_SECONDS from now."""
        self.failures += 1
        seconds = settings.COMBO_CACHE_RETRY_SECONDS
        if seconds <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if self._retry_at is None:
                self._opened_at = now
            self._retry_at = now + seconds
            self.last_error = describe(exc)

    def succeeded(self) -> None:
        """A cache call answered: close the breaker (logged when it was open)."""
        if self._retry_at is None:
            return
        with self._lock:
            if self._retry_at is None:
                return
            self._retry_at = None
            down = time.monotonic() - self._opened_at
        logger.info("rate-limit cache is back after %.0f s; counting requests again", down)

    def reset(self) -> None:
        """Closed, nothing logged (tests)."""
        with self._lock:
            self._retry_at = None
            self.last_error = ""


cache_breaker = CacheBreaker()
