"""Request ids and the envelope for responses that never reached a DRF view.

Unknown /v1 paths (Django's 404), oversized bodies and unexpected exceptions in
non-DRF views still answer with the envelope, so a client never parses HTML.
"""

from __future__ import annotations

import logging
import re
import uuid

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin

from combo.api.envelope import error_response
from combo.errors import ErrorCode, database_unavailable, log_failure

logger = logging.getLogger("combo.api")

# A client's own id is echoed only when it is short and plain, so it cannot
# inject anything into logs or headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


# The envelope for a non-JSON error answered outside DRF, by its HTTP status.
_BY_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
    500: ErrorCode.INTERNAL_ERROR,
    502: ErrorCode.UPSTREAM_ERROR,
    503: ErrorCode.SERVICE_UNAVAILABLE,
    504: ErrorCode.UPSTREAM_TIMEOUT,
}


def new_request_id(incoming: str | None) -> str:
    if incoming and _SANE_REQUEST_ID.match(incoming):
        return incoming
    return f"req_{uuid.uuid4().hex}"


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class RequestIdMiddleware(MiddlewareMixin):
    def process_request(self, request):
        request.request_id = new_request_id(request.headers.get("X-Request-Id"))

    def process_response(self, request, response):
        response["X-Request-Id"] = getattr(request, "request_id", "")
        return response


class ApiEnvelopeMiddleware(MiddlewareMixin):
    """Envelope for /v1 answers produced outside DRF (URL resolver, size limits, crashes)."""

    _EXEMPT = ("/v1/openapi.json", "/v1/docs")

    def __init__(self, get_response):
        super().__init__(get_response)
        self._own_limit = [re.compile(pattern) for pattern in settings.API_OWN_BODY_LIMIT_PATHS]

    def process_request(self, request):
        if not is_api_path(request.path):
            return None
        if any(pattern.match(request.path) for pattern in self._own_limit):
            return None
        length = request.META.get("CONTENT_LENGTH") or "0"
        content_type = request.META.get("CONTENT_TYPE", "")
        try:
            size = int(length)
        except ValueError:
            return error_response(request, ErrorCode.BAD_REQUEST, "Content-Length is not a number.")
        # Multipart uploads are capped by their own endpoint; JSON bodies here.
        if not content_type.startswith("multipart/") and size > settings.API_MAX_JSON_BYTES:
            return error_response(
                request,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"The request body is {size} bytes; the limit is {settings.API_MAX_JSON_BYTES}.",
            )
        return None

    def process_response(self, request, response):
        if not is_api_path(request.path) or request.path.startswith(self._EXEMPT):
            return response
        response = self._enveloped(request, response)
        # Answers are one user's data, and some carry a secret shown once (a new
        # API key or webhook secret, JWTs: RFC 6749 5.1): no cache may keep them.
        response.setdefault("Cache-Control", "no-store")
        return response

    def _enveloped(self, request, response):
        if response.status_code in (204, 304):
            # No content, so neither a type nor a length (RFC 9110 forbids the
            # length on a 204, and on a 304 any length but the 200's; DRF's
            # renderer names a type anyway). The other headers stay: a 304
            # keeps its ETag, X-Request-Id, Cache-Control and rate limits.
            if not getattr(response, "streaming", False) and not response.content:
                for header in ("Content-Type", "Content-Length"):
                    if header in response:
                        del response[header]
            return response
        content_type = response.get("Content-Type", "")
        if response.status_code >= 400 and not content_type.startswith("application/json"):
            # Keep the status's meaning: an unlisted 4xx is still the client's
            # fault, never a 500 "internal error".
            fallback = ErrorCode.BAD_REQUEST if response.status_code < 500 else ErrorCode.INTERNAL_ERROR
            error = _BY_STATUS.get(response.status_code, fallback)
            message = None
            if error is ErrorCode.NOT_FOUND:
                message = f"No endpoint at {request.path}."
            new = error_response(request, error, message)
            for header in ("Allow", "Retry-After"):
                if header in response:
                    new[header] = response[header]
            return new
        return response

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        log_failure(logger, exception, request.path, getattr(request, "request_id", None), method=request.method)
        unavailable = database_unavailable(exception)
        if unavailable is not None:
            return error_response(request, unavailable.error, unavailable.message, headers=unavailable.headers)
        return error_response(request, ErrorCode.INTERNAL_ERROR)
