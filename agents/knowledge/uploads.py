"""Keeping uploads within COMBO_MAX_UPLOAD_BYTES, whatever the client claims.

Three fences, so an oversized upload never fills memory or disk:

1. `upload_body_guard` (ASGI, in front of Django under daphne): Django's ASGI
   handler spools the whole request body to a temporary file before any view
   runs, so the limit has to hold before that. It refuses a Content-Length over
   the limit at once and stops reading a body (chunked, or longer than it said)
   as soon as it passes the limit, answering 413 with code 10123.
2. `check_content_length` (in the view): the same early refusal on Django's own
   request path (the test client, WSGI).
3. `SizeLimitUploadHandler` (multipart parsing): counts the bytes of the file
   part itself and stops at the limit, whichever path the request took.

The body may be a little larger than the file (multipart boundaries, part
headers, the agent_id field): `MULTIPART_ALLOWANCE` bytes are allowed for that.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from agents.knowledge.services import too_large_error
from combo.api.envelope import error_body
from combo.api.middleware import new_request_id

MULTIPART_ALLOWANCE = 64 * 1024


def body_limit() -> int:
    return settings.COMBO_MAX_UPLOAD_BYTES + MULTIPART_ALLOWANCE


def check_content_length(meta: dict) -> None:
    """Raise the 413 error when the declared body is over the limit (a bad number is left to the parser)."""
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if declared > body_limit():
        raise too_large_error()


class SizeLimitUploadHandler(FileUploadHandler):
    """First in the handler chain: passes data on, and stops the upload past the limit."""

    def __init__(self, request=None):
        super().__init__(request)
        self.received = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.COMBO_MAX_UPLOAD_BYTES:
            raise too_large_error()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler builds the file object


def upload_body_guard(app):
    """Wrap the Django ASGI app for the upload route (see the module docstring)."""

    async def guarded(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = new_request_id(headers.get("x-request-id"))
        limit = body_limit()
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return await _refuse(send, request_id)

        received = 0
        over = False

        async def limited_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django's body reader treats this as the client going away
                    # and returns without a response; the 413 is sent below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        await app(scope, limited_receive, send)
        if over:
            await _refuse(send, request_id)

    return guarded


async def _refuse(send, request_id: str) -> None:
    error = too_large_error()
    body = json.dumps(error_body(error.error, error.message, request_id, extra=error.extra)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-request-id", request_id.encode()),
                # The rest of the body is not read; the client must not reuse this connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
