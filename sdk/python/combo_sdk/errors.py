"""The exceptions the SDK raises, one class per envelope class and per common code.

Every error the server answers with is a `ComboAPIError` carrying the envelope's
`code` and `message`, the HTTP `status` and the `request_id` (the
`X-Request-Id` header, else `data.request_id`) to quote to an operator.
Which class is raised is decided by the code first (the server's one table,
combo/errors.py), then by the HTTP status, then by the code's class
(1xxxx client, 2xxxx server, 3xxxx upstream), so a code this SDK version does
not know yet still lands in a sensible class.

    ComboError
    ├── APIConnectionError          the server could not be reached / the connection broke
    │   └── APITimeoutError
    ├── ComboAPIError               the server answered with an error envelope
    │   ├── ClientError             1xxxx
    │   │   ├── ValidationError     10001, with .errors (field -> messages)
    │   │   ├── AuthenticationError 10010-10014 (401)
    │   │   ├── PermissionDeniedError 10030, 10031 (403)
    │   │   ├── NotFoundError       10040 (404)
    │   │   ├── PreconditionFailedError 10061 (412): update()/delete(..., if_match=) on a changed object
    │   │   └── RateLimitError      10090 (429), with .retry_after
    │   ├── ServerError             2xxxx (5xx)
    │   └── UpstreamError           3xxxx (the LLM provider or another external API)
    ├── StreamIncompleteError       a stream ended without its `done` event
    ├── FileProcessingError         files.wait_until_ready(): the file failed
    └── SignatureVerificationError  webhooks.construct_event(): the signature is not valid
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Type

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .types import File

__all__ = [
    "ComboError",
    "APIConnectionError",
    "APITimeoutError",
    "ComboAPIError",
    "ClientError",
    "ValidationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "PreconditionFailedError",
    "RateLimitError",
    "ServerError",
    "UpstreamError",
    "StreamIncompleteError",
    "FileProcessingError",
    "SignatureVerificationError",
    "error_from_envelope",
]


class ComboError(Exception):
    """Base class of every exception this SDK raises."""


class APIConnectionError(ComboError):
    """The request did not get an answer: connection refused, reset, or broken mid-stream."""

    def __init__(self, message: str = "Could not reach the Combo server.", *, request: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """The server did not answer within the configured timeout."""

    def __init__(self, message: str = "The request to the Combo server timed out.", *, request: Any = None) -> None:
        super().__init__(message, request=request)


class ComboAPIError(ComboError):
    """The server answered with an error envelope (or a non-2xx status)."""

    def __init__(
        self,
        message: str,
        *,
        code: Optional[int] = None,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
        headers: Optional[Dict[str, str]] = None,
        response: Optional[httpx.Response] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.data: Dict[str, Any] = data or {}
        self.headers: Dict[str, str] = headers or {}
        self.response = response

    @property
    def status_code(self) -> Optional[int]:
        """Alias of `status` (httpx's and requests' name for it)."""
        return self.status

    @property
    def errors(self) -> Optional[Dict[str, Any]]:
        """Per-field details (`data.errors`) when fields are at fault, else None."""
        errors = self.data.get("errors")
        return errors if isinstance(errors, dict) else None

    def __str__(self) -> str:
        parts = [self.message]
        meta = []
        if self.code is not None:
            meta.append(f"code {self.code}")
        if self.status is not None:
            meta.append(f"HTTP {self.status}")
        if self.request_id:
            meta.append(f"request {self.request_id}")
        if meta:
            parts.append(f"({', '.join(meta)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"status={self.status!r}, request_id={self.request_id!r})"
        )


class ClientError(ComboAPIError):
    """1xxxx: the request is at fault (validation, auth, ACL, not found, limits)."""


class ValidationError(ClientError):
    """10001: some fields are invalid; `.errors` maps each field to its messages."""

    @property
    def errors(self) -> Dict[str, Any]:
        errors = self.data.get("errors")
        return errors if isinstance(errors, dict) else {}


class AuthenticationError(ClientError):
    """10010-10014: no credential, or a wrong, revoked or expired one; or a failed login."""


class PermissionDeniedError(ClientError):
    """10030 forbidden; 10031 the operation needs a JWT, not an API key."""


class NotFoundError(ClientError):
    """10040: no such object for this credential (another user's id looks the same)."""


class PreconditionFailedError(ClientError):
    """10061: `update(..., if_match=etag)` found the object changed since that version; nothing changed.

    Read the object again (`retrieve()`), decide what to do with its current
    state, and retry with its new `.etag`.
    """


class RateLimitError(ClientError):
    """10090: over the rate limit. `.retry_after` is the seconds to wait (from `Retry-After`)."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ComboAPIError):
    """2xxxx: Combo itself is at fault; quote `request_id` when reporting it."""


class UpstreamError(ComboAPIError):
    """3xxxx: the LLM provider or another external API failed or timed out.

    `.retry_after`: the seconds the provider asked to wait before trying
    again (30003, from `data.retry_after`, also sent in a stream's error
    event), or None when it did not say.
    """

    @property
    def retry_after(self) -> Optional[float]:
        value = self.data.get("retry_after")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        return None


class StreamIncompleteError(ComboError):
    """A completion stream ended (or was closed) before its `done` event."""


class FileProcessingError(ComboError):
    """`files.wait_until_ready()` saw the file fail; `.file` holds it with its reason."""

    def __init__(self, message: str, *, file: File) -> None:
        super().__init__(message)
        self.message = message
        self.file = file


class SignatureVerificationError(ComboError):
    """A webhook signature is missing, malformed, stale or does not match the body."""


# --- code -> class ---------------------------------------------------------

_BY_CODE: Dict[int, Type[ComboAPIError]] = {
    10001: ValidationError,
    10010: AuthenticationError,
    10011: AuthenticationError,
    10012: AuthenticationError,
    10013: AuthenticationError,
    10014: AuthenticationError,
    10030: PermissionDeniedError,
    10031: PermissionDeniedError,
    10040: NotFoundError,
    10061: PreconditionFailedError,
    10090: RateLimitError,
}

_BY_STATUS: Dict[int, Type[ComboAPIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    412: PreconditionFailedError,
    429: RateLimitError,
}


def error_class(code: Optional[int], status: Optional[int]) -> Type[ComboAPIError]:
    """The exception class for an envelope `code` and HTTP `status` (either may be None)."""
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if status is not None and status in _BY_STATUS:
        return _BY_STATUS[status]
    if code is not None and code > 0:
        leading = code // 10000
        if leading == 1:
            return ClientError
        if leading == 2:
            return ServerError
        if leading == 3:
            return UpstreamError
    if status is not None:
        if 400 <= status < 500:
            return ClientError
        if status >= 500:
            return ServerError
    return ComboAPIError


def error_from_envelope(
    body: Any,
    *,
    status: Optional[int] = None,
    request_id: Optional[str] = None,
    headers: Optional[Dict[str, str]] = None,
    retry_after: Optional[float] = None,
    response: Optional[httpx.Response] = None,
) -> ComboAPIError:
    """Build the right exception from an error envelope (or any body that is not one)."""
    code: Optional[int] = None
    message: Optional[str] = None
    data: Dict[str, Any] = {}
    if isinstance(body, dict):
        raw_code = body.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
        if isinstance(body.get("message"), str):
            message = body["message"]
        if isinstance(body.get("data"), dict):
            data = body["data"]
    if request_id is None and isinstance(data.get("request_id"), str):
        request_id = data["request_id"]
    if not message:
        message = f"The server answered HTTP {status}." if status else "The server reported an error."
    cls = error_class(code, status)
    kwargs: Dict[str, Any] = dict(
        code=code, status=status, request_id=request_id, data=data, headers=headers, response=response
    )
    if cls is RateLimitError:
        kwargs["retry_after"] = retry_after
    return cls(message, **kwargs)
