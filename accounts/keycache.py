"""API keys as the authentication step reads them, kept in Django's cache between requests.

Every API-key request looked its key up in the database (key and owner, one
joined query): on PostgreSQL that was the largest part of what authentication,
rate limiting and the envelope add to a read (bench/api_throughput.py). The
row is now kept in the cache (Redis with REDIS_URL, so every process shares
it) for API_KEY_CACHE_SECONDS, and forgotten whenever it can have changed:

- an ApiKey saved, deleted (with its owner too) or revoked
  (`accounts.services.api_keys_revoke`, which the API, console and admin use),
- its owner saved (deactivation included),

each at once and again when the transaction commits, so a request running
meanwhile cannot put the old row back for long. Every check (hash, revoked,
expiry, owner active) still runs on every request; only the read is saved.

A drop can fail: the cache unreachable for a moment while a key is revoked.
The old row would then be believed again once the cache is back. So every
entry carries the cache's current generation (one shared value in the cache),
and a process that has seen any cache call fail starts a new generation the
next time it reaches the cache: entries of the old one are read from the
database again, by every process.

The owner's password hash is never cached: the owner comes back without it
(a deferred field, read from the database if anything asks for it).

It is on by default only with Redis (REDIS_URL), which every process shares,
so a change made through one process is seen by all at once. The in-process
cache of the embedded default is one per process: there the setting defaults
to 0 (off), since `serve --workers N` would otherwise let a revoked key work in
the other processes until its entry expired. A cache that fails is skipped
(the database answers); after a failure it is not asked for
COMBO_CACHE_RETRY_SECONDS (combo.cachebreaker), except by `forget`, which
always tries: a revoked key's entry must go whenever the cache can be reached.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from accounts.models import ApiKey, User
from combo.cachebreaker import cache_breaker

logger = logging.getLogger("combo.auth")

_OWNER_FIELDS = tuple(f.attname for f in User._meta.concrete_fields if f.attname != "password")
_KEY_FIELDS = tuple(f.attname for f in ApiKey._meta.concrete_fields)
# A change to either model's columns (or to the entries' layout) changes the cache key: no stale shape is read.
_SHAPE = hashlib.sha256(repr(("generation", _KEY_FIELDS, _OWNER_FIELDS)).encode()).hexdigest()[:8]
_GENERATION = f"combo:apikey:{_SHAPE}:generation"
# The ApiKey attribute holding the generation its row was read under (absent: do not cache it).
_READ_UNDER = "_combo_cache_generation"
# cache_breaker.failures when this process last started a generation.
_failures_seen = 0


def _seconds() -> int:
    return settings.API_KEY_CACHE_SECONDS


def _cache_key(prefix: str) -> str:
    return f"combo:apikey:{_SHAPE}:{prefix}"


def get_many(prefixes) -> dict[str, ApiKey]:
    """{prefix: key with its owner} for the keys that exist, from the cache and one query for the rest."""
    prefixes = set(prefixes)
    found: dict[str, ApiKey] = {}
    seconds = _seconds()
    cached = seconds > 0 and prefixes and cache_breaker.allow()
    if cached:
        try:
            generation = _new_generation_after_failures()
            entries = cache.get_many([_GENERATION, *(_cache_key(prefix) for prefix in prefixes)])
        except Exception as exc:  # noqa: BLE001 - the database answers instead
            logger.debug("API key cache unavailable: %s", type(exc).__name__)
            cache_breaker.failed(exc)
            cached = False
        else:
            cache_breaker.succeeded()
            generation = entries.get(_GENERATION, generation)
            for prefix in prefixes:
                entry = entries.get(_cache_key(prefix))
                if entry is not None and entry[0] == generation:
                    found[prefix] = _rebuild(entry)
    missing = prefixes - found.keys()
    if missing:
        read = {key.prefix: key for key in ApiKey.objects.select_related("owner").filter(prefix__in=missing)}
        found.update(read)
        if cached:
            for api_key in read.values():
                setattr(api_key, _READ_UNDER, generation)
            remember(*read.values())
    return found


def _new_generation_after_failures() -> str | None:
    """A new generation when a cache call of this process failed since the last one (else None: read it).

    Whatever failed (a dropped entry perhaps) the entries written before are
    no longer believed, here or in any other process.
    """
    global _failures_seen
    failures = cache_breaker.failures
    if failures == _failures_seen:
        return None
    generation = uuid.uuid4().hex
    cache.set(_GENERATION, generation, None)
    _failures_seen = failures
    return generation


def get(prefix: str) -> ApiKey | None:
    """The key with this visible prefix and its owner (None: no such key)."""
    return get_many([prefix]).get(prefix)


def remember(*api_keys: ApiKey) -> None:
    """Store the keys (with their owners loaded) as they are now (not while the cache breaker is open).

    Only keys read through `get_many` with the cache answering: each is stored
    under the generation it was read in, so a row read before a new one began is never believed.
    """
    seconds = _seconds()
    api_keys = [api_key for api_key in api_keys if hasattr(api_key, _READ_UNDER)]
    if seconds <= 0 or not api_keys or not cache_breaker.allow():
        return
    entries = {
        _cache_key(api_key.prefix): (
            getattr(api_key, _READ_UNDER),
            tuple(getattr(api_key, name) for name in _KEY_FIELDS),
            tuple(getattr(api_key.owner, name) for name in _OWNER_FIELDS),
        )
        for api_key in api_keys
    }
    try:
        cache.set_many(entries, seconds)
    except Exception as exc:  # noqa: BLE001
        logger.debug("API key cache unavailable: %s", type(exc).__name__)
        cache_breaker.failed(exc)
    else:
        cache_breaker.succeeded()


def _rebuild(entry) -> ApiKey:
    generation, key_values, owner_values = entry
    api_key = ApiKey.from_db("default", _KEY_FIELDS, key_values)
    api_key.owner = User.from_db("default", _OWNER_FIELDS, owner_values)
    setattr(api_key, _READ_UNDER, generation)
    return api_key


def forget(*prefixes: str) -> None:
    """Drop these keys now and once more when the current transaction commits (nothing to do when off).

    Tried even while the cache breaker is open (a revoked key's entry would
    otherwise outlive the outage); what happens is reported to the breaker.
    """
    if not prefixes or _seconds() <= 0:
        return
    names = [_cache_key(prefix) for prefix in prefixes]

    def drop() -> None:
        try:
            cache.delete_many(names)
        except Exception as exc:  # noqa: BLE001 - a new generation outdates them (get_many)
            logger.warning("could not drop cached API keys (%s); they are read from the database "
                           "once the cache is back", type(exc).__name__)
            cache_breaker.failed(exc)
        else:
            cache_breaker.succeeded()

    drop()
    transaction.on_commit(drop)


def _key_changed(sender, instance: ApiKey, **kwargs) -> None:
    forget(instance.prefix)


def _owner_saved(sender, instance: User, created: bool = False, **kwargs) -> None:
    if not created and _seconds() > 0:
        forget(*ApiKey.objects.filter(owner_id=instance.pk).values_list("prefix", flat=True))


def connect_signals() -> None:
    """Keys and owners changed through the ORM. Bulk `update()`s send no signal: they call `forget`.

    A deleted owner needs nothing of its own: its keys are deleted with it, each sending post_delete.
    """
    post_save.connect(_key_changed, sender=ApiKey, dispatch_uid="combo.keycache.key_saved")
    post_delete.connect(_key_changed, sender=ApiKey, dispatch_uid="combo.keycache.key_deleted")
    post_save.connect(_owner_saved, sender=User, dispatch_uid="combo.keycache.owner_saved")
