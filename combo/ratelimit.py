"""Rate limits: which family a /v1 operation belongs to, whose budget it spends, and the count.

- ROUTES is the one table mapping operations to families; everything else under
  /v1 is `default`. Ceilings are requests per minute from settings.RATE_LIMITS,
  overridden per API key by ApiKey.*_per_minute (read on every request, so an
  operator's change applies at once).
- Counting is django-ratelimit's core (`get_usage`) over Django's cache: with
  REDIS_URL every server process shares one budget per key.
- Django/DRF requests are checked by combo.api.throttling. The completion stream,
  which runs outside Django's middleware, checks the requests that arrive
  together with `check_many()` (one Redis round trip for all) and answers
  with `headers()`; `acheck()` is `check()` for other async callers.
- A request answered 304 Not Modified gives its unit back (`refund()`, from
  combo.api.throttling): to the very counter it was spent from, never below zero.
- After a cache call fails, the cache is not asked for COMBO_CACHE_RETRY_SECONDS
  (combo.cachebreaker): meanwhile every check acts at once as on a failure.

docs/rate-limits.md is the user-facing description of all this.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_ratelimit import ALL

# Its key and window functions too, so a batch spends the very counters
# get_usage does (the pinned version's; tests/ratelimit holds check_many to check).
from django_ratelimit.core import (
    EXPIRATION_FUDGE,
    _get_window,
    _make_cache_key,
    get_usage,
)

from combo.cachebreaker import cache_breaker, describe
from combo.errors import ComboError, ErrorCode

if TYPE_CHECKING:
    from accounts.models import ApiKey
    from accounts.services import Principal

logger = logging.getLogger("combo.ratelimit")

COMPLETIONS = "completions"
UPLOADS = "uploads"
DEFAULT = "default"
LOGIN = "login"
WEBHOOK = "webhook"
HEALTH = "health"
FAMILIES = (COMPLETIONS, UPLOADS, DEFAULT, LOGIN, WEBHOOK, HEALTH)

# Every ceiling is per minute (django-ratelimit's fixed window, "<n>/m").
WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    family: str


# The one table. Matched on method and path (not on URL names), so an operation
# is limited as soon as its view lands, whichever app serves it.
ROUTES: tuple[Route, ...] = (
    Route("POST", re.compile(r"^/v1/combo/agents/(?P<agent_id>[^/]+)/completions/?$"), COMPLETIONS),
    Route("POST", re.compile(r"^/v1/combo/files/?$"), UPLOADS),
    Route("POST", re.compile(r"^/v1/auth/token/?$"), LOGIN),
    Route("POST", re.compile(r"^/v1/integrations/webhooks/(?P<webhook_id>[^/]+)/events/?$"), WEBHOOK),
    # Load balancers and orchestrators probe every process, often from one address:
    # a budget of its own, so probes never spend (or are refused by) the API's.
    Route("GET", re.compile(r"^/v1/health/?$"), HEALTH),
)

# Which ApiKey field overrides which family's ceiling (null: the setting applies).
_KEY_OVERRIDES = {
    COMPLETIONS: "completions_per_minute",
    UPLOADS: "uploads_per_minute",
    DEFAULT: "default_per_minute",
}


def operation_family(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The family of `method path`, and the path parameters its route captured."""
    method = method.upper()
    for route in ROUTES:
        if route.method == method:
            match = route.pattern.match(path)
            if match:
                return route.family, match.groupdict()
    return DEFAULT, {}


def limit_for(family: str, api_key: ApiKey | None = None) -> int:
    """Requests per minute for `family`: the key's override when it has one, else the setting."""
    field = _KEY_OVERRIDES.get(family)
    if api_key is not None and field is not None:
        override = getattr(api_key, field, None)
        if override is not None:
            return int(override)
    return int(settings.RATE_LIMITS[family])


# --- Client IP ---------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address) -> bool:
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def _parse_ip(raw: str | None):
    """An address from REMOTE_ADDR or one X-Forwarded-For hop ("[v6]:port", "v4:port" too)."""
    if not raw:
        return None
    value = raw.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(remote_addr: str | None, forwarded_for: str | None = None) -> str:
    """The caller's address: the TCP peer, or, behind a trusted proxy, the right-most
    X-Forwarded-For hop that is not itself a trusted proxy.

    Each proxy appends the peer it saw, so hops right of the first untrusted one were
    written by our proxies; anything left of it is the client's own claim.
    """
    peer = _parse_ip(remote_addr)
    if peer is None:
        return (remote_addr or "").strip() or "unknown"
    if not forwarded_for or not _is_trusted(peer):
        return str(peer)
    nearest = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _parse_ip(hop)
        if address is None:
            break  # not written by a proxy of ours: stop at the last hop we can vouch for
        if not _is_trusted(address):
            return str(address)
        nearest = address
    return str(nearest)


def request_client_ip(request) -> str:
    """client_ip() for a Django request."""
    return client_ip(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def scope_client_ip(scope: dict) -> str:
    """client_ip() for an ASGI HTTP scope (the stream path)."""
    client = scope.get("client")
    forwarded = [
        value.decode("latin-1") for name, value in scope.get("headers", []) if name.lower() == b"x-forwarded-for"
    ]
    return client_ip(client[0] if client else None, ",".join(forwarded) or None)


def _ip_subject(ip: str) -> str:
    address = _parse_ip(ip)
    if address is None:
        return f"ip:{ip}"
    if address.version == 6:
        # One IPv6 client usually holds a whole /64; counting single addresses would
        # give it 2**64 budgets (django-ratelimit's RATELIMIT_IPV6_MASK, default 64).
        prefix = getattr(settings, "RATELIMIT_IPV6_MASK", 64)
        return f"ip:{ipaddress.ip_network(f'{address}/{prefix}', strict=False).network_address}"
    return f"ip:{address}"


# --- Counting ----------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """One counter a request spends from: a family, whose budget it is, and its ceiling."""

    family: str
    subject: str  # "key:<id>", "user:<id>", "ip:<address>", "username:<name>", "webhook:<id>"
    limit: int


def budgets_for(
    family: str,
    *,
    principal: Principal | None = None,
    client_ip: str = "",
    username: str | None = None,
    webhook_id: str | None = None,
) -> list[Budget]:
    """The counters one request of `family` spends (login spends two)."""
    if family == LOGIN:
        limit = limit_for(LOGIN)
        budgets = [Budget(LOGIN, _ip_subject(client_ip), limit)]
        if username:
            # Case-folded so "Alice" and "alice" share a budget whatever the database collation;
            # a lone surrogate (which no cache key can carry) written as its escape.
            name = username.casefold().encode("utf-8", "backslashreplace").decode("utf-8")
            budgets.append(Budget(LOGIN, f"username:{name}", limit))
        return budgets
    if family == WEBHOOK and webhook_id:
        return [Budget(WEBHOOK, f"webhook:{webhook_id.lower()}", limit_for(WEBHOOK))]
    if principal is not None and principal.api_key is not None:
        return [Budget(family, f"key:{principal.api_key.pk}", limit_for(family, principal.api_key))]
    if principal is not None:
        return [Budget(family, f"user:{principal.user.pk}", limit_for(family))]
    return [Budget(family, _ip_subject(client_ip), limit_for(family))]


@dataclass(frozen=True)
class Decision:
    """The outcome of one check, for the 429 and for the X-RateLimit-* headers."""

    family: str
    limit: int
    remaining: int
    reset: int  # whole seconds until the window frees: 1..WINDOW_SECONDS
    allowed: bool
    # The cache keys of the counters check() spent from, for refund(). Empty from check_many().
    spent: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def retry_after(self) -> int:
        return self.reset

    def error(self) -> ComboError:
        """The 429 for a refused decision (rate_limited, 10090), headers included."""
        unit = "request" if self.limit == 1 else "requests"
        return ComboError(
            ErrorCode.RATE_LIMITED,
            f"Rate limit for {self.family} exceeded: {self.limit} {unit} per minute.",
            extra={"family": self.family, "limit": self.limit, "retry_after": self.retry_after},
            headers=headers(self),
        )


class _CacheUnavailable(Exception):
    pass


def _spend(budget: Budget) -> Decision | None:
    usage = get_usage(
        None,  # no request: the key callable carries the subject, so the stream path needs none
        group=f"combo.{budget.family}",
        key=lambda group, request: budget.subject,
        rate=f"{budget.limit}/m",
        increment=True,
    )
    if usage is None:  # RATELIMIT_ENABLE is off
        return None
    if usage["time_left"] < 0:
        # django-ratelimit's answer when the cache returned nothing (count None): a
        # real window end is never in the past.
        raise _CacheUnavailable("the cache returned no count")
    decision = _decision(budget, usage["count"], usage["time_left"])
    window = _spent_window(budget, usage["time_left"])
    return replace(decision, spent=(_counter_key(f"combo.{budget.family}", window, budget.limit, budget.subject),))


def _spent_window(budget: Budget, time_left: int) -> int:
    """The end of the window get_usage counted in, which it ended `time_left` s after the second it answered in.

    That second was a moment ago, so now + time_left is that window's end or a
    few seconds past it; one subject's windows end WINDOW_SECONDS apart (at the
    offset _get_window gives it), so the last window end at or before it is the one.
    """
    latest = int(time.time()) + time_left
    return latest - (latest - _get_window(budget.subject, WINDOW_SECONDS)) % WINDOW_SECONDS


def _decision(budget: Budget, count: int, time_left: int) -> Decision:
    """The outcome of spending one unit of `budget`: its counter now at `count`, its window ending in `time_left` s."""
    # The window is named by its last whole second: a window ending at second w
    # still counts at w, and the next one starts at w + 1. time_left is w - now
    # (0 during the last second), so the wait is time_left + 1, never 0.
    return Decision(
        family=budget.family,
        limit=budget.limit,
        remaining=max(budget.limit - count, 0),
        reset=min(max(time_left + 1, 1), WINDOW_SECONDS),
        allowed=count <= budget.limit,
    )


def _binding(decisions: list[Decision]) -> Decision:
    """Of several counters, the one the caller is up against."""
    refused = [d for d in decisions if not d.allowed]
    if refused:
        return max(refused, key=lambda d: d.reset)
    return min(decisions, key=lambda d: (d.remaining, -d.reset))


class _WarnEvery:
    """Logs the cache being down at most once per interval per process, not per request."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: float | None = None
        self._lock = threading.Lock()

    def __call__(self, error: BaseException | str) -> None:
        """`error`: the exception, or describe() of the one that opened the cache breaker."""
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.seconds:
                return
            self._last = now
        mode = "serving requests without limits (fail-open)" if settings.RATE_LIMIT_FAIL_OPEN else (
            "refusing requests with 503 (fail-closed)"
        )
        reason = error if isinstance(error, str) else describe(error)
        logger.warning("rate-limit cache unavailable (%s); %s", reason, mode)

    def reset(self) -> None:
        self._last = None


warn_cache_down = _WarnEvery(60.0)


def _fails_closed(error: BaseException | str) -> bool:
    """The cache failed, or its breaker is open: warn (once a minute); True when requests get 503 20003."""
    warn_cache_down(error)
    return not settings.RATE_LIMIT_FAIL_OPEN


def _ask_cache(call: Callable[[], Any]) -> tuple[Any, BaseException | str | None]:
    """`call()` through the cache breaker: (its result, None), or (None, what says the cache is down).

    Skipped while the breaker is open (combo.cachebreaker); any cache failure
    (redis ConnectionError/TimeoutError, memcached, ...) opens it.
    """
    if not cache_breaker.allow():
        return None, cache_breaker.last_error
    try:
        result = call()
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # noqa: BLE001 - any cache failure
        cache_breaker.failed(exc)
        return None, exc
    cache_breaker.succeeded()
    return result, None


def check(
    family: str,
    *,
    principal: Principal | None = None,
    client_ip: str = "",
    username: str | None = None,
    webhook_id: str | None = None,
) -> Decision | None:
    """Spend one request of `family` from the caller's budget(s) and say whether it may go on.

    `principal` is accounts.services.Principal (None when no credential was sent);
    `client_ip` is from request_client_ip() or scope_client_ip(). Login passes the
    `username` tried; the webhook family its `webhook_id`.

    Returns the Decision (refused ones too: raise `decision.error()`), or None when
    nothing was counted: limits are switched off, or the cache is down (or was
    moments ago: combo.cachebreaker) and the deployment fails open. When it
    fails closed, raises ComboError 20003 (503).
    """
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    budgets = budgets_for(
        family, principal=principal, client_ip=client_ip, username=username, webhook_id=webhook_id
    )
    decisions, down = _ask_cache(lambda: [_spend(budget) for budget in budgets])
    if down is not None:
        if _fails_closed(down):
            raise ComboError(ErrorCode.RATE_LIMIT_BACKEND_DOWN)
        return None
    decisions = [d for d in decisions if d is not None]
    if not decisions:
        return None
    return replace(_binding(decisions), spent=tuple(spent for d in decisions for spent in d.spent))


def refund(decision: Decision | None) -> Decision | None:
    """Give back what an allowed check() spent (a 304 Not Modified is free); the decision as it now reads.

    Each counter goes one down in the window it was spent in, even if that window
    has ended meanwhile (its key then expires as it would have: the expiry is
    kept), and never below zero: a counter that is gone (expired, evicted) is
    left alone. A refused request spent nothing that it may have back: its 429
    came before anything else. If the cache cannot be reached the unit stays
    spent, and the decision is returned as it was.
    """
    if decision is None or not decision.allowed or not decision.spent:
        return decision
    keys = list(decision.spent)
    found = _redis_client()
    _, down = _ask_cache(lambda: _uncount_in_redis(*found, keys) if found is not None else _uncount_in_cache(keys))
    if down is not None:
        warn_cache_down(down)
        return decision
    return replace(decision, remaining=min(decision.remaining + 1, decision.limit), spent=())


def check_many(family: str, callers: list[tuple[Principal | None, str]]) -> list[Decision | ComboError | None]:
    """`check` for many requests of one family at once: [(principal, client_ip)] -> one outcome each.

    Each outcome is what `check` would return for that request in this order
    (a Decision, or None), or the ComboError it would raise. The counters,
    their keys and their expiry are django-ratelimit's, so `check` and
    `check_many` spend one budget. With django-redis (REDIS_URL) every
    counter is spent in one pipelined round trip, rather than two per request
    (django-ratelimit's add, then incr); with any other cache (the embedded
    in-process one) each counter is one `incr`, and an `add` only when its
    window starts.
    """
    if not callers:
        return []
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return [None] * len(callers)
    found = _redis_client()
    per_caller = [budgets_for(family, principal=principal, client_ip=client_ip) for principal, client_ip in callers]
    group = f"combo.{family}"
    keys: list[tuple[Budget, int, str]] = []  # (budget, window end, django-ratelimit's key)
    for budgets in per_caller:
        for budget in budgets:
            window = _get_window(budget.subject, WINDOW_SECONDS)
            keys.append((budget, window, _counter_key(group, window, budget.limit, budget.subject)))
    counts, down = _ask_cache(lambda: _count_in_redis(*found, keys) if found is not None else _count_in_cache(keys))
    if down is not None:
        if _fails_closed(down):
            return [ComboError(ErrorCode.RATE_LIMIT_BACKEND_DOWN) for _ in callers]
        return [None] * len(callers)
    now = int(time.time())
    spent = iter(zip(keys, counts))
    outcomes: list[Decision | ComboError | None] = []
    for budgets in per_caller:
        decisions = []
        for _ in budgets:
            (budget, window, _), count = next(spent)
            decisions.append(_decision(budget, count, window - now))
        outcomes.append(_binding(decisions) if decisions else None)
    return outcomes


@functools.lru_cache(maxsize=4096)
def _counter_key(group: str, window: int, limit: int, subject: str) -> str:
    """django-ratelimit's cache key of one counter (an md5 of its parts, about 12 us to make)."""
    return _make_cache_key(group, window, f"{limit}/m", subject, ALL)


def _count_in_redis(redis_client, cache, keys: list[tuple[Budget, int, str]]) -> list[int]:
    pipe = redis_client.pipeline(transaction=False)
    for _, _, key in keys:
        pipe.eval(_INCR_WITH_EXPIRY, 1, cache.client.make_key(key), WINDOW_SECONDS + EXPIRATION_FUDGE)
    return pipe.execute()


def _count_in_cache(keys: list[tuple[Budget, int, str]]) -> list[int]:
    """Each counter one up, as django-ratelimit's add-then-incr counts it: a new one starts at 1."""
    from django.core.cache import caches

    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    counts = []
    for _, _, key in keys:
        try:
            count = cache.incr(key)
        except ValueError:  # no counter yet: this request starts the window's
            count = 1 if cache.add(key, 1, WINDOW_SECONDS + EXPIRATION_FUDGE) else cache.incr(key)
        counts.append(count)
    return counts


def _uncount_in_redis(redis_client, cache, keys: list[str]) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for key in keys:
        pipe.eval(_DECR_ABOVE_ZERO, 1, cache.client.make_key(key))
    pipe.execute()


def _uncount_in_cache(keys: list[str]) -> None:
    from django.core.cache import caches

    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    for key in keys:
        try:
            count = cache.decr(key)  # keeps the counter's expiry (an incr by -1)
        except ValueError:  # gone: expired, or evicted from a full in-process cache
            continue
        if count < 0:
            # It was at zero: evicted and started again since this unit was spent
            # into it, so the unit is gone already. Put it back.
            cache.incr(key)


# Atomic per counter: one down, only if it is still there and above zero (DECR
# alone would make a missing counter -1, with no expiry); DECR keeps the expiry.
_DECR_ABOVE_ZERO = """
local count = tonumber(redis.call('GET', KEYS[1]))
if count and count > 0 then return redis.call('DECR', KEYS[1]) end
return false
"""


# Atomic per counter: count, and give a new counter its expiry (the one
# django-ratelimit's add() gives it, the period + EXPIRATION_FUDGE).
_INCR_WITH_EXPIRY = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def _redis_client():
    """(redis client, cache) when django-ratelimit's cache is django-redis's plain client; else None."""
    from django.core.cache import caches

    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    try:
        from django_redis.client import DefaultClient
    except ImportError:  # pragma: no cover - django-redis is a requirement
        return None
    client = getattr(cache, "client", None)
    if type(client) is not DefaultClient:  # sharded, herd or other clients: one request at a time
        return None
    return client.get_client(write=True), cache


async def acheck(
    family: str,
    *,
    principal: Principal | None = None,
    client_ip: str = "",
    username: str | None = None,
    webhook_id: str | None = None,
) -> Decision | None:
    """check() for async callers (the completion stream): the cache call runs off the event loop."""
    # Not thread-sensitive: no database work here, so it need not queue behind the ORM's thread.
    return await sync_to_async(check, thread_sensitive=False)(
        family, principal=principal, client_ip=client_ip, username=username, webhook_id=webhook_id
    )


def headers(decision: Decision | None) -> dict[str, str]:
    """The X-RateLimit-* headers for a decision (and Retry-After when it was refused)."""
    if decision is None:
        return {}
    result = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset),
    }
    if not decision.allowed:
        result["Retry-After"] = str(decision.retry_after)
    return result


_FAMILY_DOCS = {
    COMPLETIONS: ("POST /v1/combo/agents/{agent_id}/completions", "API key (JWT: user; none: client IP)"),
    UPLOADS: ("POST /v1/combo/files", "API key (JWT: user; none: client IP)"),
    DEFAULT: ("every other /v1 operation", "API key (JWT: user; none: client IP)"),
    LOGIN: ("POST /v1/auth/token", "client IP, and separately the username tried"),
    WEBHOOK: ("POST /v1/integrations/webhooks/{webhook_id}/events", "webhook (signed calls); client IP (any other)"),
    HEALTH: ("GET /v1/health", "client IP"),
}


def markdown_table() -> str:
    """This deployment's families and ceilings, for the OpenAPI description."""
    lines = [
        "Requests per minute; over the ceiling: HTTP 429, code 10090, `Retry-After`. "
        "Counted responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and "
        "`X-RateLimit-Reset` (seconds). A `304 Not Modified` is not counted: its headers show the "
        "budget as it was before the request.",
        "",
        "| family | operations | per minute | counted per |",
        "|---|---|---|---|",
    ]
    for family in FAMILIES:
        operations, per = _FAMILY_DOCS[family]
        lines.append(f"| {family} | {operations} | {settings.RATE_LIMITS[family]} | {per} |")
    return "\n".join(lines)
