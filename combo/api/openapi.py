"""The OpenAPI document's shape: every response in the envelope, every error listed.

drf-spectacular describes what the views return; the post-processing hook wraps
each JSON success in `{code, data, message}`, adds the error envelope for each
error status an operation can answer with, the headers every response carries,
and the error-code table (from combo.errors) to the description.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance

from combo import ratelimit
from combo.api.conditional import NOT_MODIFIED_DESCRIPTION
from combo.api.serializers import StrictSerializerMixin
from combo.errors import ErrorCode, markdown_table

_ERROR_DESCRIPTIONS = {
    "400": "Validation failed or the body is malformed (10001, 10002, 10004); for uploads also "
    "an empty file (10120), content that does not match the file name (10122) or no file (10124).",
    "401": "Missing, invalid, revoked or expired credential (10010-10014).",
    "403": "Forbidden (10030, 10031).",
    "404": "Not found, or owned by someone else (10040).",
    "406": "The Accept header admits none of the media types this operation answers with (10051).",
    "409": "Conflicts with the current state (10060).",
    "405": "Method not allowed (10050).",
    "413": "Request body too large (10070), or an uploaded file over the size limit (10123).",
    "415": "Unsupported Content-Type (10003), or a kind of file that is not supported (10121).",
    "429": (
        "Rate limited (10090): `data` names the `family`, its `limit` per minute and "
        "`retry_after` (seconds, as in the Retry-After header)."
    ),
    "500": "Internal error (20001).",
    "502": "Upstream error (30001, 30005, 30006).",
    "503": (
        "Upstream or dependency unavailable (30003, 30004, 20002, 20003, 20004). When the language "
        "model provider asked to wait (30003), the database is unavailable (20002) or the server is "
        "shutting down (20004), the Retry-After "
        "header says how long, and for 30003 `data.retry_after` too."
    ),
    "504": "Upstream timeout (30002).",
}

_COMMON_HEADERS = {
    "X-Request-Id": {
        "description": "This request's id; quote it when reporting a problem.",
        "schema": {"type": "string"},
    },
    # Sent on every response of a request that was counted (docs/rate-limits.md);
    # absent when the request was refused before counting (401, 403, 405, 406,
    # 413, 415, an unknown path, a completion refused by a draining process:
    # 503/20004) or the limit store is down.
    "X-RateLimit-Limit": {
        "description": (
            "Requests allowed per minute for this operation's family and this caller. The three X-RateLimit "
            "headers are on every counted response, absent when a request is refused before it is counted "
            "(401, 403, 405, 406, 413, 415, and the 503 20004 of a server process that is shutting down)."
        ),
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Reset": {
        "description": "Whole seconds until the window resets (1-60), the same unit as Retry-After.",
        "schema": {"type": "integer", "minimum": 1},
    },
}

# On 429: RFC 9110 delay-seconds until the window frees, never 0.
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds until the window frees and the request may be retried (at least 1).",
        "schema": {"type": "integer", "minimum": 1},
    }
}
# On 503, when there is something to wait for: the provider's own Retry-After
# (30003, rounded up to whole seconds) or a process that is shutting down (20004).
_RETRY_AFTER_503 = {
    "UnavailableRetryAfter": {
        "description": (
            "Sent when waiting helps: whole seconds the language model provider asked to wait (30003), "
            "or 1 while this server process shuts down (20004)."
        ),
        "schema": {"type": "integer", "minimum": 1},
    }
}


class EnvelopeAutoSchema(AutoSchema):
    """Adds the error statuses each operation can answer with."""

    # Statuses beyond DRF's own that every authenticated /v1 operation can return.
    def get_error_statuses(self) -> list[str]:
        statuses = ["400", "406", "429", "500"]
        if self.get_auth():
            statuses += ["401", "403"]
        if "{" in self.path:
            statuses.append("404")
        if self.method in ("POST", "PATCH", "PUT"):
            statuses += ["413", "415"]
        # A view adds statuses of its own: a list, or a dict of lists per viewset action.
        extra = getattr(self.view, "extra_error_statuses", [])
        if isinstance(extra, dict):
            extra = extra.get(getattr(self.view, "action", None), [])
        statuses += list(extra)
        return sorted(set(statuses))

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # StrictSerializerMixin refuses an unknown field with 10001; say so, so that
        # clients and validators do not take extra properties for harmless.
        if direction == "request" and isinstance(force_instance(serializer), StrictSerializerMixin):
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        # A view may say more precisely what a status means for it (`error_descriptions`).
        descriptions = {**_ERROR_DESCRIPTIONS, **getattr(self.view, "error_descriptions", {})}
        if getattr(self.view, "action", None) in getattr(self.view, "not_modified_actions", ()):
            # A conditional read (combo.api.conditional): 304 with the ETag header and no body.
            not_modified = {"description": NOT_MODIFIED_DESCRIPTION}
            headers = self._get_response_headers_for_code("304", direction)
            if headers:
                not_modified["headers"] = headers
            responses.setdefault("304", not_modified)
        for status in self.get_error_statuses():
            responses.setdefault(
                status,
                {
                    "description": descriptions.get(status, "Error"),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
                },
            )
        return responses


def _envelope(schema: dict | None) -> dict:
    return {
        "type": "object",
        "required": ["code", "data", "message"],
        "properties": {
            "code": {"type": "integer", "enum": [0], "description": "0 on success."},
            "data": schema or {"type": "object", "nullable": True},
            "message": {"type": "string", "example": "ok"},
        },
    }


def _request_limits() -> str:
    """The limits on a request's size, as the server (combo.server) and the settings enforce them."""
    from django.conf import settings

    from combo.server import MAX_HEADER_FIELDS, REQUEST_HEAD_BYTES

    return (
        f"The request line (method, URL and version) may be at most {REQUEST_HEAD_BYTES:,} bytes, else 414 "
        f"({ErrorCode.URI_TOO_LONG.code}); the request line and all header fields together at most "
        f"{REQUEST_HEAD_BYTES:,} bytes (line ends not counted) and {MAX_HEADER_FIELDS} fields, else 431 "
        f"({ErrorCode.HEADERS_TOO_LARGE.code}). A JSON body may be at most {settings.API_MAX_JSON_BYTES:,} bytes "
        f"and an uploaded file {settings.COMBO_MAX_UPLOAD_BYTES:,} bytes, else 413. A request that is not valid "
        f"HTTP/1.1 (bytes outside ASCII in the URL: percent-encode them) is 400 ({ErrorCode.BAD_REQUEST.code}). "
        "These refusals close the connection."
    )


def postprocess_envelope(result, generator, request, public):
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorEnvelope"] = {
        "type": "object",
        "required": ["code", "data", "message"],
        "properties": {
            "code": {
                "type": "integer",
                "enum": [member.code for member in ErrorCode],
                "description": "See the error-code table in this document's description.",
            },
            "message": {"type": "string"},
            "data": {
                "type": "object",
                "required": ["request_id"],
                "properties": {
                    "request_id": {"type": "string"},
                    "errors": {
                        "type": "object",
                        # An object-valued field (an agent's `llm`) nests its own fields' messages.
                        "additionalProperties": {
                            "oneOf": [
                                {"type": "array", "items": {}},
                                {"type": "object", "additionalProperties": True},
                            ]
                        },
                        "description": (
                            "Per-field messages, on validation errors only: a list of messages, or for a "
                            "field that is an object, the same mapping for its own fields."
                        ),
                    },
                },
                "additionalProperties": True,
            },
        },
    }
    components.setdefault("headers", {}).update(_COMMON_HEADERS | _RETRY_AFTER | _RETRY_AFTER_503)
    header_refs = {name: {"$ref": f"#/components/headers/{name}"} for name in _COMMON_HEADERS}
    retry_after_refs = {name: {"$ref": f"#/components/headers/{name}"} for name in _RETRY_AFTER}

    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for status, response in operation.get("responses", {}).items():
                response.setdefault("headers", {}).update(header_refs)
                if status == "429":
                    response["headers"].update(retry_after_refs)
                elif status == "503":
                    response["headers"]["Retry-After"] = {"$ref": "#/components/headers/UnavailableRetryAfter"}
                if not status.startswith("2"):
                    continue
                content = response.get("content") or {}
                json_body = content.get("application/json")
                if json_body is not None and not operation.get("x-combo-raw"):
                    json_body["schema"] = _envelope(json_body.get("schema"))
                elif not content and status != "204":
                    response["content"] = {"application/json": {"schema": _envelope(None)}}
            operation.pop("x-combo-raw", None)

    info = result.setdefault("info", {})
    info["description"] = (
        "Combo's public API. Every JSON response is an envelope "
        "`{\"code\": 0, \"data\": ..., \"message\": \"ok\"}`; errors carry a non-zero code "
        "and `data.request_id`.\n\n## Error codes\n\n" + markdown_table()
        + "\n\n## Request limits\n\n" + _request_limits()
        + "\n\n## Rate limits\n\n" + ratelimit.markdown_table()
    )
    return result
