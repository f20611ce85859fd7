"""The Postman collection: its structure from the live OpenAPI document and from
hand-written documents that exercise the edge cases (multipart, $ref, allOf)."""

from __future__ import annotations

import json
import re

import pytest

from combo.postman import SCHEMA_URL, collection_from_openapi, singular, variable_names


@pytest.fixture
def live_collection(alice_client) -> dict:
    return json.loads(alice_client.get("/console/api/postman.json").content)


@pytest.fixture
def document(client, db) -> dict:
    return client.get("/v1/openapi.json").json()


def requests_of(collection: dict) -> list[dict]:
    return [item for folder in collection["item"] for item in folder["item"]]


def test_the_collection_is_postman_v2_1_pointed_at_this_deployment(live_collection):
    assert live_collection["info"]["schema"] == SCHEMA_URL
    assert live_collection["info"]["name"] == "Combo API"
    variables = {v["key"]: v["value"] for v in live_collection["variable"]}
    assert variables["base_url"] == "http://testserver/v1"
    assert variables["api_key"] == ""
    assert {"agent_id", "session_id", "api_key_id"} <= set(variables)
    assert live_collection["auth"] == {
        "type": "bearer", "bearer": [{"key": "token", "value": "{{api_key}}", "type": "string"}],
    }


def test_one_request_per_operation_in_folders_by_tag(live_collection, document):
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    tags = {op["tags"][0] for item in document["paths"].values() for m, op in item.items() if m != "parameters"}
    assert {folder["name"] for folder in live_collection["item"]} == tags
    seen = []
    for request in (item["request"] for item in requests_of(live_collection)):
        path = re.sub(r"\{\{[a-z_]+\}\}", "{}", request["url"]["raw"].replace("{{base_url}}", "/v1"))
        seen.append((request["method"], path))
    expected = sorted((method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path in operations)
    assert sorted(seen) == expected


def test_path_variables_are_named_collection_variables(live_collection):
    urls = {item["name"]: item["request"]["url"] for item in requests_of(live_collection)}
    assert urls["Get agent"]["raw"] == "{{base_url}}/combo/agents/{{agent_id}}"
    assert urls["Get agent"]["path"] == ["combo", "agents", "{{agent_id}}"]
    assert urls["Ask the agent a question"]["raw"] == "{{base_url}}/combo/agents/{{agent_id}}/completions"
    assert urls["Delete session"]["raw"] == "{{base_url}}/combo/agents/{{agent_id}}/sessions/{{session_id}}"
    assert urls["Delete api key"]["raw"] == "{{base_url}}/api-keys/{{api_key_id}}"
    for url in urls.values():
        assert not re.search(r"(?<!\{)\{[a-z_]+\}(?!\})", url["raw"]), url["raw"]


def test_bodies_are_json_examples_from_the_request_schemas(live_collection):
    items = {item["name"]: item["request"] for item in requests_of(live_collection)}
    create = items["Create agent"]
    assert create["body"]["mode"] == "raw" and create["body"]["options"]["raw"]["language"] == "json"
    assert json.loads(create["body"]["raw"]) == {"name": "<name>"}
    assert {"key": "Content-Type", "value": "application/json"} in create["header"]
    assert json.loads(items["Ask the agent a question"]["body"]["raw"]) == {"question": "<question>"}
    assert "body" not in items["List agents"]


def test_operations_without_credentials_say_noauth_and_the_rest_inherit(live_collection):
    items = {item["name"]: item["request"] for item in requests_of(live_collection)}
    assert items["GET /health"]["auth"] == {"type": "noauth"}
    assert items["POST /auth/token"]["auth"] == {"type": "noauth"}
    assert "auth" not in items["List agents"]


def test_deletes_come_last_in_their_folder(live_collection):
    for folder in live_collection["item"]:
        methods = [item["request"]["method"] for item in folder["item"]]
        assert methods == sorted(methods, key=lambda m: m == "DELETE"), folder["name"]


def test_create_requests_keep_the_new_id_and_every_request_checks_for_5xx(live_collection):
    items = {item["name"]: item for item in requests_of(live_collection)}
    script = "\n".join(items["Create agent"]["event"][0]["script"]["exec"])
    assert 'pm.collectionVariables.set("agent_id", body.data.id)' in script
    script = "\n".join(items["Create session"]["event"][0]["script"]["exec"])
    assert 'pm.collectionVariables.set("session_id", body.data.id)' in script
    collection_test = "\n".join(live_collection["event"][0]["script"]["exec"])
    assert "pm.expect(pm.response.code).to.be.below(500)" in collection_test


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
