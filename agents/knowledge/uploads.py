"""Keeping uploads within COMBO_MAX_UPLOAD_BYTES, whatever the client claims.

Three fences, so an oversized upload can neither fill the disk nor memory:

1. `install_daphne_body_cap` (the server process): Twisted, under daphne,
   buffers a whole request body (to a temporary file past 100 KB) before the
   ASGI application sees a byte, and Django's ASGI handler then spools it again
   before any view runs. So the cap must hold inside Twisted: a body declared
   or streamed (chunked, or longer than it said) past `max_body_bytes()` is
   answered 413 at once and the connection is closed; the rest is never stored.
2. `check_content_length` (the view): refuses a declared Content-Length over
   the upload limit before the body is parsed, on every server (and under
   Django's test client).
3. `SizeLimitUploadHandler` (multipart parsing): counts the bytes of the file
   part itself and stops at exactly COMBO_MAX_UPLOAD_BYTES.

The body may be a little larger than the file (multipart boundaries, part
headers, the agent_id field): `MULTIPART_ALLOWANCE` bytes are allowed for that.
"""

from __future__ import annotations

import json
import logging
import re

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from agents.knowledge.services import too_large_error
from combo.api.envelope import error_body
from combo.api.middleware import is_api_path, new_request_id
from combo.errors import ComboError, ErrorCode

logger = logging.getLogger("combo.knowledge")

MULTIPART_ALLOWANCE = 64 * 1024
UPLOAD_PATH = b"/v1/combo/files"


def upload_body_limit() -> int:
    return settings.COMBO_MAX_UPLOAD_BYTES + MULTIPART_ALLOWANCE


def max_body_bytes() -> int:
    """The largest request body any path may send (JSON bodies are capped lower by the API middleware)."""
    return max(settings.API_MAX_JSON_BYTES, upload_body_limit())


def check_content_length(meta: dict) -> None:
    """Raise the 413 error when the declared body is over the limit (a bad number is left to the parser)."""
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if declared > upload_body_limit():
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


# ---------------------------------------------------------------- inside daphne


def _refusal_error(path: bytes, content_type: bytes) -> ComboError:
    """The refusal of the limit this request is under, not of this cap (the largest limit of all).

    The same words as the endpoint itself or combo.bodylimit would use for a
    body just over its limit: the upload's 10123, a webhook event's limit, the
    JSON limit of the rest of /v1.
    """
    target = path.split(b"?", 1)[0].decode("latin-1")
    if target.encode("latin-1") == UPLOAD_PATH:
        return too_large_error()
    if any(re.match(pattern, target) for pattern in settings.API_OWN_BODY_LIMIT_PATHS):
        from integrations.services import event_too_large_error

        return event_too_large_error()
    if is_api_path(target) and not content_type.startswith(b"multipart/"):
        limit = settings.API_MAX_JSON_BYTES
        return ComboError(ErrorCode.PAYLOAD_TOO_LARGE, f"The request body is over the limit of {limit} bytes.")
    return ComboError(ErrorCode.PAYLOAD_TOO_LARGE, f"The request body is over {max_body_bytes():,} bytes.")


def _refusal(path: bytes, content_type: bytes = b"") -> bytes:
    """A complete HTTP/1.1 413 response with the envelope, closing the connection."""
    error = _refusal_error(path, content_type)
    request_id = new_request_id(None)
    body = json.dumps(error_body(error.error, error.message, request_id, extra=error.extra)).encode()
    head = (
        "HTTP/1.1 413 Payload Too Large\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-Id: {request_id}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def install_daphne_body_cap() -> None:
    """Cap request bodies inside Twisted (see the module docstring). Call once, in the daphne process."""
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_combo_body_cap", False):
        return
    got_length, handle_chunk, process = WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process

    def refuse(request) -> None:
        request._combo_refused = True
        channel = request.channel
        path = getattr(channel, "_path", b"") or b""  # the request line is parsed before the body
        logger.warning("refused a request body over %s bytes for %r", max_body_bytes(), path[:200])
        # No "100 Continue" after the refusal (Twisted sends it after gotLength).
        request.requestHeaders.removeHeader(b"Expect")
        content_type = (request.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
        channel.transport.write(_refusal(path, content_type.lower()))
        channel.loseConnection()

    def capped_got_length(self, length):
        self._combo_refused = False
        self._combo_body_bytes = 0
        if length is not None and length > max_body_bytes():
            got_length(self, 0)  # no buffer for a body that will never be read
            refuse(self)
            return
        got_length(self, length)

    def capped_handle_chunk(self, data):
        if self._combo_refused:
            return
        self._combo_body_bytes += len(data)
        if self._combo_body_bytes > max_body_bytes():
            refuse(self)
            return
        handle_chunk(self, data)

    def capped_process(self):
        if getattr(self, "_combo_refused", False):
            return None  # already answered 413; the application never runs
        return process(self)

    WebRequest.gotLength = capped_got_length
    WebRequest.handleContentChunk = capped_handle_chunk
    WebRequest.process = capped_process
    WebRequest._combo_body_cap = True
