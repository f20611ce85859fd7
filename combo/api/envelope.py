"""The response envelope every JSON answer under /v1 wears (API.md).

Views return plain data; the renderer wraps it as {"code": 0, "data": ..., "message": "ok"}.
Errors are shaped by combo.api.exceptions and pass through untouched.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import JsonResponse
from rest_framework.renderers import JSONRenderer

from combo.errors import ErrorCode, challenge


def success(data: Any, message: str = "ok") -> dict:
    return {"code": 0, "data": data, "message": message}


def error_body(
    error: ErrorCode,
    message: str | None,
    request_id: str | None,
    *,
    errors: dict | None = None,
    extra: dict | None = None,
) -> dict:
    data: dict[str, Any] = {"request_id": request_id}
    if errors:
        data["errors"] = errors
    if extra:
        data.update(extra)
    return {"code": error.code, "message": message or error.default_message, "data": data}


def error_response(
    request,
    error: ErrorCode,
    message: str | None = None,
    *,
    errors: dict | None = None,
    extra: dict | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """An error envelope as a plain Django response, for code outside DRF."""
    request_id = getattr(request, "request_id", None)
    response = JsonResponse(
        error_body(error, message, request_id, errors=errors, extra=extra), status=error.status
    )
    response["X-Request-Id"] = request_id or ""
    for key, value in (headers or {}).items():
        response[key] = value
    if error.status == 401:
        response["WWW-Authenticate"] = challenge(error)
    return response


class EnvelopeRenderer(JSONRenderer):
    """Wraps successful DRF responses in the envelope; errors are already wrapped."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and response.status_code in (204, 304):
            return b""  # 204 No Content, 304 Not Modified: no envelope either (HTTP forbids a body)
        if response is not None and getattr(response, "combo_envelope", False) is False:
            if response.status_code < 400:
                data = success(data)
        return super().render(data, accepted_media_type, renderer_context)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
