"""Refuse oversized /v1 bodies at the ASGI edge, before Django copies them.

Django's ASGI handler reads the whole body into its own spooled file before any
view or middleware runs. This wrapper answers 413 from Content-Length, or stops
reading a chunked body at the limit, so Django never sees it. (Under daphne,
Twisted has already received the body by then: the reverse proxy's
`client_max_body_size` is what refuses a huge upload before it crosses the
network; see deploy/nginx.conf.)
"""

from __future__ import annotations

import json
import re

from django.conf import settings

from combo.api.envelope import error_body
from combo.api.middleware import new_request_id
from combo.errors import ErrorCode

UPLOAD_PATH = "/v1/combo/files"


def _limit(path: str, headers: dict[bytes, bytes]) -> int | None:
    if not path.startswith("/v1/"):
        return None
    if headers.get(b"content-type", b"").startswith(b"multipart/"):
        return getattr(settings, "COMBO_MAX_UPLOAD_BYTES", 20 * 1024 * 1024) + 64 * 1024
    return settings.API_MAX_JSON_BYTES


async def _refuse(send, headers: dict[bytes, bytes], limit: int, path: str) -> None:
    request_id = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
    error = ErrorCode.PAYLOAD_TOO_LARGE
    if path == UPLOAD_PATH:
        # The upload's own refusal (10123, with data.limit_bytes), as the view and
        # the cap inside daphne answer it; that cap is the larger of this limit and
        # the JSON one, so a small COMBO_MAX_UPLOAD_BYTES is enforced here first.
        from agents.knowledge.services import too_large_error

        refusal = too_large_error()
        error = refusal.error
        body = json.dumps(error_body(error, refusal.message, request_id, extra=refusal.extra)).encode()
    else:
        body = json.dumps(
            {"code": error.code, "message": f"The request body is over the limit of {limit} bytes.",
             "data": {"request_id": request_id}}
        ).encode()
    await send({
        "type": "http.response.start",
        "status": error.status,
        "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                    (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


def body_limit(app):
    async def wrapper(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        limit = _limit(path, headers)
        if limit is None:
            return await app(scope, receive, send)
        # The paths that limit their own bodies (API_OWN_BODY_LIMIT_PATHS: a
        # webhook's events) refuse an oversized body themselves and store the
        # refusal as a delivery (docs/webhooks.md); the view reads no more than
        # its limit + 1 bytes, so it is handed at most that many.
        webhook = any(re.match(pattern, path) for pattern in settings.API_OWN_BODY_LIMIT_PATHS)
        if webhook:
            limit = settings.COMBO_WEBHOOK_MAX_BODY_BYTES
        declared = headers.get(b"content-length")
        if declared is not None:
            # The server frames the body by Content-Length, so it cannot exceed it.
            if declared.isdigit() and int(declared) > limit and not webhook:
                return await _refuse(send, headers, limit, path)
            return await app(scope, receive, send)
        # No Content-Length (chunked): read up to the limit here, then replay.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                if not webhook:
                    return await _refuse(send, headers, limit, path)
                messages.append({"type": "http.request", "body": b"", "more_body": False})
                break
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replaying_receive():
            return next(replay, None) or await receive()

        # The body is whole (or cut at the limit) now: say how long it is. Django's
        # WSGI request reads only Content-Length bytes, so without one a chunked
        # body reached its views empty.
        read = sum(len(message.get("body", b"")) for message in messages if message["type"] == "http.request")
        scope = {**scope, "headers": [*scope.get("headers", []), (b"content-length", str(read).encode())]}
        await app(scope, replaying_receive, send)

    return wrapper
