"""The Postman collection: its structure from the live OpenAPI document and from
hand-written documents that exercise the edge cases (multipart, $ref, allOf)."""

from __future__ import annotations

import json
import re

import pytest

from combo.postman import SCHEMA_URL, collection_from_openapi, singular, variable_names


# --- Hand-written documents: the cases this deployment does not have yet ---------

UPLOAD_DOC = {
    "openapi": "3.0.3",
    "info": {"title": "T", "version": "1"},
    "tags": [{"name": "files", "description": "Knowledge files"}],
    "paths": {
        "/v1/combo/files": {
            "post": {
                "operationId": "combo_files_create",
                "tags": ["files"],
                "security": [{"ApiKeyAuth": []}],
                "requestBody": {"content": {"multipart/form-data": {"schema": {"$ref": "#/components/schemas/Up"}}}},
                "responses": {"201": {"description": "created"}},
            }
        },
        "/v1/combo/files/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "combo_files_retrieve", "tags": ["files"],
                "parameters": [{"name": "expand", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/v1/integrations/webhooks/{webhook_id}/deliveries/{id}": {
            "post": {
                "operationId": "integrations_webhooks_deliveries_redeliver", "summary": "Redeliver",
                "tags": ["integrations"], "security": [{}],
                "requestBody": {"content": {"application/json": {"schema": {
                    "allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object", "required": ["mode"],
                              "properties": {"mode": {"type": "string", "enum": ["now", "later"]}}}],
                }}}},
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
    "components": {"schemas": {
        "Up": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}, "agent_id": {"type": "string", "format": "uuid"},
        }},
        "Base": {"type": "object", "required": ["count", "when", "flag", "tags", "id"], "properties": {
            "count": {"type": "integer", "minimum": 3}, "when": {"type": "string", "format": "date-time"},
            "flag": {"type": "boolean", "default": True}, "tags": {"type": "array", "items": {"type": "string"}},
            "id": {"type": "string", "readOnly": True}, "note": {"type": "string", "example": "hi"},
        }},
    }},
}


def test_a_multipart_upload_becomes_a_formdata_body_with_a_file_field():
    collection = collection_from_openapi(UPLOAD_DOC, "http://h/v1")
    upload = collection["item"][0]["item"][0]["request"]
    assert upload["body"]["mode"] == "formdata"
    fields = {f["key"]: f for f in upload["body"]["formdata"]}
    assert fields["file"]["type"] == "file"
    assert fields["agent_id"]["type"] == "text"
    assert not any(h["key"] == "Content-Type" for h in upload["header"])  # Postman sets the boundary
    assert collection["item"][0]["description"] == "Knowledge files"


def test_path_level_parameters_and_query_parameters_are_kept():
    collection = collection_from_openapi(UPLOAD_DOC, "http://h/v1")
    get = collection["item"][0]["item"][1]["request"]
    assert get["url"]["raw"] == "{{base_url}}/combo/files/{{file_id}}"
    assert get["url"]["query"] == [{"key": "expand", "value": "", "disabled": True, "description": ""}]


def test_example_values_follow_example_default_enum_then_type():
    collection = collection_from_openapi(UPLOAD_DOC, "http://h/v1")
    redeliver = collection["item"][1]["item"][0]
    assert redeliver["name"] == "Redeliver"
    assert redeliver["request"]["url"]["raw"] == "{{base_url}}/integrations/webhooks/{{webhook_id}}/deliveries/{{delivery_id}}"
    assert redeliver["request"]["auth"] == {"type": "noauth"}
    assert json.loads(redeliver["request"]["body"]["raw"]) == {
        "count": 3, "when": "2030-01-01T00:00:00Z", "flag": True, "tags": [], "mode": "now",
    }


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/combo/agents/{id}", {"id": "agent_id"}),
    ("/v1/api-keys/{id}", {"id": "api_key_id"}),
    ("/v1/combo/agents/{agent_id}/sessions/{id}", {"agent_id": "agent_id", "id": "session_id"}),
    ("/v1/integrations/webhooks/{id}/deliveries", {"id": "webhook_id"}),
])
def test_a_bare_id_is_named_after_its_resource(path, expected):
    assert variable_names(path) == expected


def test_singular_handles_the_plurals_the_api_uses():
    assert [singular(w) for w in ("agents", "api-keys", "deliveries", "files", "access")] == [
        "agent", "api_key", "delivery", "file", "access",
    ]
