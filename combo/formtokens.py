"""One-time form tokens, spent once even when two copies of a form arrive at the same moment.

The console's create and rotate forms carry a token kept in the session, so a
reload does not act twice. But two requests (a double click, a retried POST)
can each read the session before either has saved it with the token spent;
`claim` is the atomic step: the first request to claim a token gets True, any
other False. The claim is kept in Django's cache, long enough to cover that
overlap; after it the session, where the token is gone, refuses a repeat.

A view's POST goes through `Submission`, which refuses both kinds of repeat
the same way on every form: a note on the page the form's result is found on.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.http import HttpResponseRedirect
from django.shortcuts import redirect

logger = logging.getLogger("combo.console")

_SECONDS = 3600

FIELD = "form_token"  # the hidden input's name


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


# --- A view's POST ----------------------------------------------------------------


class Submission:
    """One POST of a form that carries a one-time token, refused when it repeats a form sent already.

    In the view, in this order:

        sent = formtokens.Submission(request, SCOPE, back=..., note="That form was already sent…")
        form = TheForm(request.POST)
        if refused := sent.refuse_repeat(form):
            return refused
        if not form.is_valid():
            ...  # shown again with `sent.token`, unspent: the corrected form may be sent
        with sent.acting():
            ...  # act

    `back` is where the repeat lands (a URL or a URL name, as `redirect` takes
    it), `note` what it says there; `note_at_once`, when given, is said instead
    to a copy sent at the same moment as the one that acts.
    """

    def __init__(self, request, scope: str, *, back: str, note: str, note_at_once: str = "") -> None:
        self.request = request
        self.scope = scope
        self.token = request.POST.get(FIELD, "")
        self.back = back
        self.note = note
        self.note_at_once = note_at_once or note

    def refuse_repeat(self, form: forms.BaseForm) -> HttpResponseRedirect | None:
        """The redirect that refuses a repeat, or None for the first send of this form.

        A repeat: the session no longer holds the token (spent by the first
        send: a reload, the back button; or never issued), or, once the form is
        valid, another copy claimed the token first. A form with errors claims
        nothing, so that its corrected copy may be sent with the same token.
        """
        if not valid(self.request, self.scope, self.token):
            return self._refuse(self.note)
        if form.is_valid() and not claim(self.scope, self.token):
            return self._refuse(self.note_at_once)
        return None

    @contextmanager
    def acting(self) -> Iterator[None]:
        """Around the form's act: its token is spent if the act succeeds, given back if it raises.

        An act that raises made nothing (the services write in one
        transaction), whether it refused the input (a ComboError the view
        shows next to the form) or failed on the server (the database away):
        the same form may be sent again and is not refused as a repeat.
        """
        try:
            yield
        except BaseException:
            release(self.scope, self.token)
            raise
        spend(self.request, self.scope, self.token)

    def _refuse(self, note: str) -> HttpResponseRedirect:
        messages.info(self.request, note)
        return redirect(self.back)
