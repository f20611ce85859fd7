"""The one table of Combo's error codes.

Every error envelope, the OpenAPI document and the README read from here.
A code, once published, never changes meaning; retired codes stay listed.

Classes (API.md): 0 success, 1xxxx client, 2xxxx server, 3xxxx upstream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.db.utils import InterfaceError, OperationalError

# The one rule for "the database cannot answer now" (a restart, a failover, a
# dropped connection, a pool with no connection to give): a request answers 503
# (database_unavailable below) and the task worker waits and polls again
# (combo/management/commands/db_worker.py), rather than either failing for good.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class ErrorInfo:
    code: int
    status: int
    slug: str
    message: str


class ErrorCode(enum.Enum):
    # --- 1xxxx: the request is at fault -------------------------------------
    VALIDATION_FAILED = ErrorInfo(10001, 400, "validation_failed", "Some fields are invalid.")
    MALFORMED_BODY = ErrorInfo(10002, 400, "malformed_body", "The request body is not valid JSON.")
    UNSUPPORTED_MEDIA_TYPE = ErrorInfo(10003, 415, "unsupported_media_type", "Unsupported Content-Type.")
    BAD_REQUEST = ErrorInfo(10004, 400, "bad_request", "The request is not valid.")
    UNAUTHENTICATED = ErrorInfo(10010, 401, "unauthenticated", "Authentication credentials were not provided.")
    CREDENTIAL_INVALID = ErrorInfo(10011, 401, "credential_invalid", "The credential is not valid.")
    CREDENTIAL_REVOKED = ErrorInfo(10012, 401, "credential_revoked", "The API key has been revoked.")
    CREDENTIAL_EXPIRED = ErrorInfo(10013, 401, "credential_expired", "The credential has expired.")
    LOGIN_FAILED = ErrorInfo(10014, 401, "login_failed", "The username or password is wrong.")
    FORBIDDEN = ErrorInfo(10030, 403, "forbidden", "You do not have permission to do this.")
    JWT_REQUIRED = ErrorInfo(10031, 403, "jwt_required", "This operation needs a signed-in user (JWT), not an API key.")
    NOT_FOUND = ErrorInfo(10040, 404, "not_found", "Not found.")
    METHOD_NOT_ALLOWED = ErrorInfo(10050, 405, "method_not_allowed", "Method not allowed.")
    NOT_ACCEPTABLE = ErrorInfo(10051, 406, "not_acceptable", "Cannot satisfy the Accept header.")
    CONFLICT = ErrorInfo(10060, 409, "conflict", "The request conflicts with the current state.")
    PRECONDITION_FAILED = ErrorInfo(
        10061, 412, "precondition_failed",
        "The object is no longer the version named in If-Match, or is still one named in If-None-Match.",
    )
    PAYLOAD_TOO_LARGE = ErrorInfo(10070, 413, "payload_too_large", "The request body is too large.")
    URI_TOO_LONG = ErrorInfo(10071, 414, "uri_too_long", "The request line (method, URL and version) is too long.")
    HEADERS_TOO_LARGE = ErrorInfo(
        10072, 431, "headers_too_large", "The request's header fields are too large or too many."
    )
    RATE_LIMITED = ErrorInfo(10090, 429, "rate_limited", "Too many requests.")
    # Files (knowledge)
    FILE_EMPTY = ErrorInfo(10120, 400, "file_empty", "The file is empty.")
    FILE_TYPE_UNSUPPORTED = ErrorInfo(10121, 415, "file_type_unsupported", "This kind of file is not supported.")
    FILE_CONTENT_MISMATCH = ErrorInfo(10122, 400, "file_content_mismatch", "The file's content does not match its name.")
    FILE_TOO_LARGE = ErrorInfo(10123, 413, "file_too_large", "The file is over the size limit.")
    FILE_MISSING = ErrorInfo(10124, 400, "file_missing", "No file was sent in the 'file' field.")
    # Webhooks (inbound callbacks)
    SIGNATURE_MISSING = ErrorInfo(10140, 401, "signature_missing", "The X-Combo-Signature header is missing.")
    SIGNATURE_MALFORMED = ErrorInfo(10141, 400, "signature_malformed", "The X-Combo-Signature header is malformed.")
    SIGNATURE_MISMATCH = ErrorInfo(10142, 401, "signature_mismatch", "The signature does not match the body.")
    SIGNATURE_TIMESTAMP_OUT_OF_WINDOW = ErrorInfo(
        10143, 401, "signature_timestamp_out_of_window", "The signature timestamp is too old or in the future."
    )
    SIGNATURE_TIMESTAMP_REQUIRED = ErrorInfo(
        10144, 401, "signature_timestamp_required", "This webhook requires the timestamped signature form."
    )
    WEBHOOK_DISABLED = ErrorInfo(10145, 403, "webhook_disabled", "This webhook is disabled.")
    EVENT_NOT_JSON = ErrorInfo(10146, 400, "event_not_json", "The event body is not a JSON object.")
    CALLBACK_URL_REFUSED = ErrorInfo(10147, 400, "callback_url_refused", "The callback URL points to a refused address.")
    EVENT_QUESTION_EMPTY = ErrorInfo(
        10148, 400, "event_question_empty",
        "The event gave no question: the webhook's template rendered empty, or (without a template) "
        "the payload has no top-level 'question' string.",
    )
    # --- 2xxxx: Combo is at fault ------------------------------------------
    INTERNAL_ERROR = ErrorInfo(20001, 500, "internal_error", "Something went wrong on our side.")
    SERVICE_UNAVAILABLE = ErrorInfo(20002, 503, "service_unavailable", "A dependency of this service is down.")
    RATE_LIMIT_BACKEND_DOWN = ErrorInfo(20003, 503, "rate_limit_backend_down", "The rate-limit store is unavailable.")
    SHUTTING_DOWN = ErrorInfo(20004, 503, "shutting_down", "The server is shutting down; the answer was interrupted.")
    # --- 3xxxx: an upstream (LLM provider, external API) is at fault --------
    UPSTREAM_ERROR = ErrorInfo(30001, 502, "upstream_error", "The language model provider returned an error.")
    UPSTREAM_TIMEOUT = ErrorInfo(30002, 504, "upstream_timeout", "The language model provider did not answer in time.")
    UPSTREAM_RATE_LIMITED = ErrorInfo(
        30003, 503, "upstream_rate_limited", "The language model provider is rate limiting requests."
    )
    UPSTREAM_UNAVAILABLE = ErrorInfo(
        30004, 503, "upstream_unavailable", "The language model provider could not be reached."
    )
    UPSTREAM_AUTH_FAILED = ErrorInfo(
        30005, 502, "upstream_auth_failed", "The language model provider refused Combo's credentials."
    )
    UPSTREAM_BAD_RESPONSE = ErrorInfo(
        30006, 502, "upstream_bad_response", "The language model provider sent a malformed or truncated answer."
    )

    @property
    def code(self) -> int:
        return self.value.code

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def slug(self) -> str:
        return self.value.slug

    @property
    def default_message(self) -> str:
        return self.value.message

    @classmethod
    def by_code(cls, code: int) -> ErrorCode:
        for member in cls:
            if member.code == code:
                return member
        raise KeyError(code)


class ComboError(Exception):
    """A domain error that maps to one envelope; raise it from services and views."""

    def __init__(
        self,
        error: ErrorCode,
        message: str | None = None,
        *,
        errors: dict | None = None,
        extra: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.error = error
        self.message = message or error.default_message
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.message)


def database_unavailable(exc: BaseException) -> ComboError | None:
    """The error for an exception that says the database cannot answer now (None: not such an exception).

    A restart, a failover, a dropped connection or a pool with no connection
    to give: 503 service_unavailable with Retry-After, which clients retry, not
    500 internal_error. The exception itself is for the logs only. The
    connection pool then tests its idle connections, so the ones the database
    closed are replaced at once.
    """
    if not isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        return None
    # Other requests should not each meet a connection the database closed (combo.dbpool).
    from combo.dbpool import after_database_failure

    after_database_failure()
    return ComboError(
        ErrorCode.SERVICE_UNAVAILABLE,
        "The database is unavailable; retry the request in a moment.",
        headers={"Retry-After": "5"},
    )


def log_failure(
    logger, exc: BaseException, where: str, request_id: str | None = None, *, method: str | None = None
) -> None:
    """Log a request that failed on the server: the database away is one WARNING line, anything else an ERROR.

    An outage is expected, not a bug: at hundreds of requests a second a
    traceback each would bury the rest of the log. The line says where (the
    request's path), with the request id the caller was given (what support
    asks them for), the exception's type and libpq's or SQLite's reason (never
    a password: neither puts one in its messages); anything else keeps its
    traceback. The record also carries `path`, `request_id` and `method` as
    attributes, which LOG_FORMAT=json writes as fields of their own.
    """
    extra = {"path": where}
    if request_id:
        extra["request_id"] = request_id
        where = f"{where} (request {request_id})"
    if method:
        extra["method"] = method
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        lines = str(exc).strip().splitlines()
        reason = lines[0].rsplit(" failed: ", 1)[-1][:200] if lines else ""
        logger.warning("database unavailable in %s: %s: %s", where, type(exc).__name__, reason, extra=extra)
    else:
        logger.error("unhandled error in %s", where, exc_info=exc, extra=extra)


_SIGNATURE_CODES = frozenset({10140, 10141, 10142, 10143, 10144})


def challenge(error: ErrorCode) -> str:
    """The WWW-Authenticate value a 401 of this code carries (RFC 9110 asks every 401 for one).

    Webhook events authenticate by their body's signature, not a bearer
    credential: their 401s name the header to send instead.
    """
    if error.code in _SIGNATURE_CODES:
        return 'X-Combo-Signature realm="combo-webhooks"'
    return 'Bearer realm="combo"'


def markdown_table() -> str:
    """The table as Markdown, for the OpenAPI description and the README."""
    lines = ["| code | HTTP | name | meaning |", "|---|---|---|---|"]
    for member in ErrorCode:
        info = member.value
        lines.append(f"| {info.code} | {info.status} | `{info.slug}` | {info.message} |")
    return "\n".join(lines)


# Codes must be unique: a duplicate would silently alias in by_code().
assert len({m.code for m in ErrorCode}) == len(ErrorCode), "duplicate error code"
