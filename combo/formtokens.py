"""One-time form tokens, spent once even when two copies of a form arrive at the same moment.

The console's create and rotate forms carry a token kept in the session, so a
reload does not act twice. But two requests (a double click, a retried POST)
can each read the session before either has saved it with the token spent;
`claim` is the atomic step: the first request to claim a token gets True, any
other False. The claim is kept in Django's cache, long enough to cover that
overlap; after it the session, where the token is gone, refuses a repeat.
"""

from __future__ import annotations

import logging
import secrets

from django.core.cache import cache

logger = logging.getLogger("combo.console")

_SECONDS = 3600


def _key(scope: str, token: str) -> str:
    return f"combo:formtoken:{scope}:{token}"


def claim(scope: str, token: str) -> bool:
    """True for the first claim of this token; False when another request claimed it already."""
    try:
        return bool(cache.add(_key(scope, token), 1, _SECONDS))
    except Exception as exc:  # noqa: BLE001 - the cache is down: the session's own check still applies
        logger.warning("form token claim skipped, the cache is unavailable: %s", type(exc).__name__)
        return True


def release(scope: str, token: str) -> None:
    """Give a claimed token back (the form was refused and may be sent again)."""
    try:
        cache.delete(_key(scope, token))
    except Exception as exc:  # noqa: BLE001
        logger.warning("form token release skipped, the cache is unavailable: %s", type(exc).__name__)


# --- The session's side: which tokens this user's open forms carry ----------------

_KEPT = 20  # open forms remembered per scope (tabs, reloads)


def issue(request, scope: str) -> str:
    """A new token for a form about to be shown, remembered in the session under `scope`."""
    token = secrets.token_urlsafe(16)
    request.session[scope] = (request.session.get(scope, []) + [token])[-_KEPT:]
    return token


def valid(request, scope: str, token: str) -> bool:
    """Whether the session issued this token and it is not spent yet."""
    return bool(token) and token in request.session.get(scope, [])


def spend(request, scope: str, token: str) -> bool:
    """Forget the token in the session (a reload then refuses it); False when it was not there."""
    tokens = request.session.get(scope, [])
    if not token or token not in tokens:
        return False
    tokens.remove(token)
    request.session[scope] = tokens
    return True
