"""Rate limits for Django/DRF requests: one DRF throttle counts, one middleware adds the headers.

A request answered 304 Not Modified (a conditional read, combo.api.conditional)
is not counted in the end: the middleware gives its unit back before writing
the headers, so they show the budget as it was before the request (as GitHub's
API does, so that polling with If-None-Match never runs into a 429 by itself).

The throttle is DRF's DEFAULT_THROTTLE_CLASSES, so it runs in every /v1 view after
authentication and permission checks and before the handler: a rejected
credential or a forbidden call spends no budget, while everything the handler
does (validation included) happens after the request was counted. The counting
itself is combo.ratelimit.check(), shared with the stream path.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils.deprecation import MiddlewareMixin
from rest_framework.throttling import BaseThrottle

from accounts.services import Principal
from combo import ratelimit
from combo.api.middleware import is_api_path
from combo.errors import ComboError, ErrorCode

_UNSET = object()


def _login_username(request) -> str | None:
    value = request.data.get(get_user_model().USERNAME_FIELD)
    return value if isinstance(value, str) and value else None


class FamilyRateThrottle(BaseThrottle):
    """Spends one request of the operation's family; a refusal raises the 429 envelope."""

    def allow_request(self, request, view):
        django_request = request._request
        if not is_api_path(django_request.path):
            return True
        if getattr(django_request, "combo_ratelimit", _UNSET) is not _UNSET:
            return True  # counted once per request, even if a view is re-entered
        family, params = ratelimit.operation_family(request.method, django_request.path)
        if family == ratelimit.WEBHOOK and getattr(view, "counts_its_own_requests", False):
            return True  # after checking the signature, to pick whose budget (integrations.api)
        principal = request.auth if isinstance(request.auth, Principal) else None
        try:
            decision = ratelimit.check(
                family,
                principal=principal,
                client_ip=ratelimit.request_client_ip(django_request),
                username=_login_username(request) if family == ratelimit.LOGIN else None,
                webhook_id=params.get("webhook_id"),
            )
        except ComboError as exc:
            # Failing closed, a down limit store refuses every call but those of
            # a view that must answer anyway (the health check: it is how an
            # operator finds out what is down).
            if exc.error is not ErrorCode.RATE_LIMIT_BACKEND_DOWN or not getattr(view, "answers_without_limits", False):
                raise
            decision = None
        django_request.combo_ratelimit = decision
        if decision is not None and not decision.allowed:
            raise decision.error()
        return True

    def wait(self):
        return None


class RateLimitHeadersMiddleware(MiddlewareMixin):
    """Adds X-RateLimit-* to every response of a request the throttle counted; a 304 gets its unit back first."""

    def process_response(self, request, response):
        decision = getattr(request, "combo_ratelimit", None)
        if response.status_code == 304 and decision is not None:
            request.combo_ratelimit = decision = ratelimit.refund(decision)
        for name, value in ratelimit.headers(decision).items():
            response[name] = value
        return response
