"""One exception handler maps every error raised in a DRF view to the envelope.

DRF's own exceptions, Django's Http404/PermissionDenied, our ComboError and any
unexpected exception all end here; nothing else builds error responses for DRF.
"""

from __future__ import annotations

import logging

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from combo.api.envelope import error_body
from combo.errors import ComboError, ErrorCode, challenge, database_unavailable, log_failure

logger = logging.getLogger("combo.api")

_AUTH_CODES = {
    "not_authenticated": ErrorCode.UNAUTHENTICATED,
    "authentication_failed": ErrorCode.CREDENTIAL_INVALID,
    "token_not_valid": ErrorCode.CREDENTIAL_INVALID,
}


def _flatten(detail) -> dict | list | str:
    """DRF's ErrorDetail tree as plain JSON (field -> list of messages)."""
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten(v) for v in detail]
    return str(detail)


def _classify(exc: Exception) -> ComboError:
    if isinstance(exc, ComboError):
        return exc
    if hasattr(exc, "combo_error"):
        return exc.combo_error
    if isinstance(exc, Http404):
        return ComboError(ErrorCode.NOT_FOUND)
    if isinstance(exc, RequestDataTooBig):
        return ComboError(ErrorCode.PAYLOAD_TOO_LARGE)
    if isinstance(exc, PermissionDenied):
        return ComboError(ErrorCode.FORBIDDEN)
    if isinstance(exc, TooManyFieldsSent):
        # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS, met while parsing a form body or a query string.
        return ComboError(ErrorCode.BAD_REQUEST, "The request has too many fields.")
    if isinstance(exc, TooManyFilesSent):
        return ComboError(ErrorCode.BAD_REQUEST, "The request has too many files.")
    if isinstance(exc, SuspiciousOperation):
        # Django answers these 400 outside DRF too: the request's fault, not ours.
        return ComboError(ErrorCode.BAD_REQUEST)
    if isinstance(exc, drf.ParseError):
        return ComboError(ErrorCode.MALFORMED_BODY, str(exc.detail))
    if isinstance(exc, drf.UnsupportedMediaType):
        return ComboError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, str(exc.detail))
    if isinstance(exc, drf.ValidationError):
        detail = _flatten(exc.detail)
        if not isinstance(detail, dict):
            detail = {"non_field_errors": detail if isinstance(detail, list) else [detail]}
        fields = ", ".join(detail)
        return ComboError(ErrorCode.VALIDATION_FAILED, f"Invalid fields: {fields}.", errors=detail)
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        code = _AUTH_CODES.get(getattr(exc, "default_code", ""), ErrorCode.CREDENTIAL_INVALID)
        if isinstance(exc, drf.NotAuthenticated):
            code = ErrorCode.UNAUTHENTICATED
        return ComboError(code, str(exc.detail) if isinstance(exc.detail, str) else None)
    if isinstance(exc, drf.PermissionDenied):
        return ComboError(ErrorCode.FORBIDDEN, str(exc.detail))
    if isinstance(exc, drf.NotFound):
        return ComboError(ErrorCode.NOT_FOUND)
    if isinstance(exc, drf.MethodNotAllowed):
        return ComboError(ErrorCode.METHOD_NOT_ALLOWED, str(exc.detail))
    if isinstance(exc, drf.NotAcceptable):
        return ComboError(ErrorCode.NOT_ACCEPTABLE)
    if isinstance(exc, drf.Throttled):
        return ComboError(ErrorCode.RATE_LIMITED)
    if isinstance(exc, drf.APIException):
        return ComboError(ErrorCode.BAD_REQUEST, str(exc.detail))
    return database_unavailable(exc) or ComboError(ErrorCode.INTERNAL_ERROR)


def exception_handler(exc: Exception, context: dict) -> Response:
    request = context.get("request")
    error = _classify(exc)
    request_id = getattr(request, "request_id", None) if request is not None else None
    if error.error.status >= 500 and not isinstance(exc, ComboError):
        log_failure(logger, exc, getattr(request, "path", "?"), request_id, method=getattr(request, "method", None))
    body = error_body(error.error, error.message, request_id, errors=error.errors, extra=error.extra)
    response = Response(body, status=error.error.status)
    response.combo_envelope = True
    for key, value in error.headers.items():
        response[key] = value
    if error.error.status == 401:
        response["WWW-Authenticate"] = challenge(error.error)
    return response
