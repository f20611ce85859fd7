"""When a failed request may be sent again, and how long to wait first.

The rules (issue 7, API.md's rate limits):

- 429 on any method: the server did nothing, so retrying is safe; wait what
  `Retry-After` says (plus a little jitter) when it says it, else back off.
  A `Retry-After` longer than `max_retry_after` is not waited out: the
  RateLimitError (with `.retry_after`) goes to the caller to decide.
- A connection that could not be opened (refused, connect timeout, no pool
  slot) on any method: the request never left.
- 502 / 503 / 504 and errors after the request was sent (read/write errors,
  the server hanging up) only for GET and DELETE, which are safe to repeat.
  Never for any other POST (or PATCH): it may have been carried out.
- A completion stream that has started (200 received) is never retried;
  callers only consult this module before a stream's first byte.

Back-off is exponential with jitter: `initial_delay * 2**attempt`, capped at
`max_delay`, then scaled by a random factor in [0.5, 1).
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Mapping, Optional

import httpx

__all__ = ["RetryPolicy", "parse_retry_after", "IDEMPOTENT_METHODS"]

IDEMPOTENT_METHODS = frozenset({"GET", "DELETE", "HEAD", "OPTIONS"})
RETRY_STATUSES_IDEMPOTENT = frozenset({502, 503, 504})

# The request never reached the server: safe for every method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have reached the server: only for idempotent methods.
_MAYBE_SENT = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with jitter for the retry after `attempt` earlier retries."""
        delay = min(self.max_delay, self.initial_delay * (2.0 ** attempt))
        return delay * (0.5 + random.random() / 2)

    def delay_for_status(
        self, method: str, status: int, headers: Mapping[str, str], attempt: int
    ) -> Optional[float]:
        """Seconds to wait before retrying an answer with `status`, or None not to retry."""
        if attempt >= self.max_retries:
            return None
        if status == 429:
            retry_after = parse_retry_after(headers.get("retry-after"))
            if retry_after is None:
                return self.backoff(attempt)
            if retry_after > self.max_retry_after:
                return None
            # A little jitter on top, never below what the server asked for.
            return retry_after + random.uniform(0, min(1.0, 0.1 * retry_after + 0.05))
        if status in RETRY_STATUSES_IDEMPOTENT and method.upper() in IDEMPOTENT_METHODS:
            return self.backoff(attempt)
        return None

    def delay_for_exception(self, method: str, exc: BaseException, attempt: int) -> Optional[float]:
        """Seconds to wait before retrying after a transport error, or None not to retry."""
        if attempt >= self.max_retries:
            return None
        if isinstance(exc, _NOT_SENT):
            return self.backoff(attempt)
        if isinstance(exc, _MAYBE_SENT) and method.upper() in IDEMPOTENT_METHODS:
            return self.backoff(attempt)
        return None
