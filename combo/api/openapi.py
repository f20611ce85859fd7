"""The OpenAPI document's shape: every response in the envelope, every error listed.

drf-spectacular describes what the views return; the post-processing hook wraps
each JSON success in `{code, data, message}`, adds the error envelope for each
error status an operation can answer with, the headers every response carries,
and the error-code table (from combo.errors) to the description.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema

from combo.errors import ErrorCode, markdown_table

_ERROR_DESCRIPTIONS = {
    "400": "Validation failed or the body is malformed (10001, 10002, 10004); for uploads also "
    "an empty file (10120), content that does not match the file name (10122) or no file (10124).",
    "401": "Missing, invalid, revoked or expired credential (10010-10014).",
    "403": "Forbidden (10030, 10031).",
    "404": "Not found, or owned by someone else (10040).",
    "405": "Method not allowed (10050).",
    "413": "Request body too large (10070), or an uploaded file over the size limit (10123).",
    "415": "Unsupported Content-Type (10003), or a kind of file that is not supported (10121).",
    "429": "Rate limited (10090); see Retry-After.",
    "500": "Internal error (20001).",
    "502": "Upstream error (30001, 30005, 30006).",
    "503": "Upstream or dependency unavailable (30003, 30004, 20002).",
    "504": "Upstream timeout (30002).",
}

_COMMON_HEADERS = {
    "X-Request-Id": {
        "description": "This request's id; quote it when reporting a problem.",
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "Requests allowed per window for this operation's family.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until the window resets.", "schema": {"type": "integer"}},
}


class EnvelopeAutoSchema(AutoSchema):
    """Adds the error statuses each operation can answer with."""

    # Statuses beyond DRF's own that every authenticated /v1 operation can return.
    def get_error_statuses(self) -> list[str]:
        statuses = ["400", "429", "500"]
        if self.get_auth():
            statuses += ["401", "403"]
        if "{" in self.path:
            statuses.append("404")
        if self.method in ("POST", "PATCH", "PUT"):
            statuses += ["413", "415"]
        statuses += list(getattr(self.view, "extra_error_statuses", []))
        return sorted(set(statuses))

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status in self.get_error_statuses():
            responses.setdefault(
                status,
                {
                    "description": _ERROR_DESCRIPTIONS.get(status, "Error"),
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
                        "additionalProperties": {"type": "array", "items": {}},
                        "description": "Per-field messages, on validation errors only.",
                    },
                },
                "additionalProperties": True,
            },
        },
    }
    components.setdefault("headers", {}).update(_COMMON_HEADERS)
    header_refs = {name: {"$ref": f"#/components/headers/{name}"} for name in _COMMON_HEADERS}

    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for status, response in operation.get("responses", {}).items():
                response.setdefault("headers", {}).update(header_refs)
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
    )
    return result
