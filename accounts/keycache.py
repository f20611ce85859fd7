"""API keys as the authentication step reads them, kept in Django's cache between requests.

Every API-key request looked its key up in the database (key and owner, one
joined query): on PostgreSQL that was the largest part of what authentication,
rate limiting and the envelope add to a read (bench/api_throughput.py). The
row is now kept in the cache (Redis with REDIS_URL, so every process shares
it) for API_KEY_CACHE_SECONDS, and forgotten whenever it can have changed:

- an ApiKey saved or deleted, revoked (`api_key_revoke`, the admin action),
- its owner saved or deleted (deactivation included),

each at once and again when the transaction commits, so a request running
meanwhile cannot put the old row back for long. Every check (hash, revoked,
expiry, owner active) still runs on every request; only the read is saved.
The owner's password hash is never cached: the owner comes back without it
(a deferred field, read from the database if anything asks for it).

It is on by default only with Redis (REDIS_URL), which every process shares,
so a change made through one process is seen by all at once. The in-process
cache of the embedded default is one per process: there the setting defaults
to 0 (off), since `serve --workers N` would otherwise let a revoked key work in
the other processes until its entry expired. A cache that fails is skipped
(the database answers).
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from accounts.models import ApiKey, User

logger = logging.getLogger("combo.auth")

_OWNER_FIELDS = tuple(f.attname for f in User._meta.concrete_fields if f.attname != "password")
_KEY_FIELDS = tuple(f.attname for f in ApiKey._meta.concrete_fields)
# A change to either model's columns changes the cache key: no stale shape is read.
_SHAPE = hashlib.sha256(repr((_KEY_FIELDS, _OWNER_FIELDS)).encode()).hexdigest()[:8]


def _seconds() -> int:
    return int(getattr(settings, "API_KEY_CACHE_SECONDS", 0))


def _cache_key(prefix: str) -> str:
    return f"combo:apikey:{_SHAPE}:{prefix}"


def get(prefix: str) -> ApiKey | None:
    """The key with this visible prefix and its owner, from the cache or the database (None: no such key)."""
    seconds = _seconds()
    if seconds > 0:
        try:
            entry = cache.get(_cache_key(prefix))
        except Exception as exc:  # noqa: BLE001 - the database answers instead
            logger.debug("API key cache unavailable: %s", type(exc).__name__)
            entry = None
        if entry is not None:
            return _rebuild(entry)
    api_key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    if api_key is not None and seconds > 0:
        remember(api_key)
    return api_key


def remember(api_key: ApiKey) -> None:
    """Store the key (with its owner loaded) as it is now."""
    seconds = _seconds()
    if seconds <= 0:
        return
    owner = api_key.owner
    entry = (
        tuple(getattr(api_key, name) for name in _KEY_FIELDS),
        tuple(getattr(owner, name) for name in _OWNER_FIELDS),
    )
    try:
        cache.set(_cache_key(api_key.prefix), entry, seconds)
    except Exception as exc:  # noqa: BLE001
        logger.debug("API key cache unavailable: %s", type(exc).__name__)


def _rebuild(entry) -> ApiKey:
    key_values, owner_values = entry
    api_key = ApiKey.from_db("default", _KEY_FIELDS, key_values)
    api_key.owner = User.from_db("default", _OWNER_FIELDS, owner_values)
    return api_key


def forget(*prefixes: str) -> None:
    """Drop these keys now and once more when the current transaction commits."""
    if not prefixes:
        return
    names = [_cache_key(prefix) for prefix in prefixes]

    def drop() -> None:
        try:
            cache.delete_many(names)
        except Exception as exc:  # noqa: BLE001 - entries then expire on their own
            logger.warning("could not drop cached API keys (%s); they expire within %s s",
                           type(exc).__name__, _seconds())

    drop()
    transaction.on_commit(drop)


def forget_owner(user_id) -> None:
    forget(*ApiKey.objects.filter(owner_id=user_id).values_list("prefix", flat=True))


def _key_changed(sender, instance: ApiKey, **kwargs) -> None:
    forget(instance.prefix)


def _owner_changed(sender, instance: User, **kwargs) -> None:
    if instance.pk is not None and kwargs.get("created") is not True:
        forget_owner(instance.pk)


def connect_signals() -> None:
    post_save.connect(_key_changed, sender=ApiKey, dispatch_uid="combo.keycache.key_saved")
    post_delete.connect(_key_changed, sender=ApiKey, dispatch_uid="combo.keycache.key_deleted")
    post_save.connect(_owner_changed, sender=User, dispatch_uid="combo.keycache.owner_saved")
    # A deleted owner's keys are deleted with it (each sends post_delete); this covers the order.
    post_delete.connect(_owner_changed, sender=User, dispatch_uid="combo.keycache.owner_deleted")
