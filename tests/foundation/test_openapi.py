"""GET /v1/openapi.json is complete and accurate enough to generate SDKs from,
and GET /v1/docs (Swagger UI) works with no internet access.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from combo.errors import ErrorCode

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
SKIPPED = {"/v1/openapi.json", "/v1/docs"}  # the document and its viewer describe nothing


@pytest.fixture
def doc(api, db) -> dict:
    status, _body, response = api.get("/v1/openapi.json")
    assert status == 200
    assert "json" in response["Content-Type"]
    return json.loads(response.content)


@pytest.mark.parametrize(
    ("method", "headers", "status", "code"),
    [("PUT", {}, 405, ErrorCode.METHOD_NOT_ALLOWED), ("GET", {"HTTP_ACCEPT": "application/xml"}, 406,
                                                     ErrorCode.NOT_ACCEPTABLE)],
)
@pytest.mark.parametrize("path", ["/v1/openapi.json", "/v1/docs", "/v1/docs?script="])
def test_the_documents_own_errors_are_json_envelopes(api, db, path, method, headers, status, code):
    status_, body, response = api.call(method, path, {} if method == "PUT" else None, **headers)
    assert (status_, body["code"]) == (status, code.code)
    assert response["Content-Type"] == "application/json"
    assert body["data"]["request_id"] == response["X-Request-Id"]


def test_the_document_itself_keeps_its_media_type(api, db):
    _, _, response = api.get("/v1/openapi.json")
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def resolve_ref(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


# --- the URLconf, walked ------------------------------------------------------------


def _openapi_path(prefix: str, pattern) -> str:
    text = str(pattern.pattern)
    text = text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)  # regex groups (routers)
    text = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)  # path converters
    return prefix + text


def _walk(patterns, prefix="/"):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, _openapi_path(prefix, pattern))
        elif isinstance(pattern, URLPattern):
            yield _openapi_path(prefix, pattern), pattern.callback


def _methods(callback) -> set[str]:
    if getattr(callback, "actions", None):  # a DRF viewset route
        allowed = set(callback.cls.http_method_names)
        return {m for m in callback.actions if m in HTTP_METHODS and m in allowed}
    view_class = getattr(callback, "cls", None)  # a DRF APIView
    assert view_class is not None, f"{callback} under /v1 is not a DRF view, so it cannot be documented"
    return {m for m in HTTP_METHODS if hasattr(view_class, m)}


def v1_operations_in_urlconf() -> set[tuple[str, str]]:
    found = set()
    for path, callback in _walk(get_resolver().url_patterns):
        if path.startswith("/v1/") and path not in SKIPPED:
            found |= {(path, method) for method in _methods(callback)}
    return found


def test_the_urlconf_walk_finds_the_known_operations():
    # Guards the walk itself: if it found nothing, the next test would pass vacuously.
    found = v1_operations_in_urlconf()
    assert {
        ("/v1/health", "get"),
        ("/v1/auth/token", "post"),
        ("/v1/auth/token/refresh", "post"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys/{id}", "get"),
        ("/v1/api-keys/{id}", "delete"),
        ("/v1/test/deprecated-ping", "get"),
    } <= found
    assert ("/v1/api-keys", "delete") not in found and ("/v1/api-keys/{id}", "patch") not in found


def test_every_v1_operation_in_the_urlconf_is_documented(doc):
    documented = {(path, method) for path, method, _ in operations(doc)}
    missing = v1_operations_in_urlconf() - documented
    assert not missing, f"not in the OpenAPI document: {sorted(missing)}"
    invented = documented - v1_operations_in_urlconf()
    assert not invented, f"documented but not routed: {sorted(invented)}"


# --- the document -----------------------------------------------------------------


def test_the_document_is_valid_openapi_3(doc):
    assert doc["openapi"].startswith("3.")
    validate(doc)


def test_both_bearer_schemes_are_declared(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"]["type"] == "http" and schemes["ApiKeyAuth"]["scheme"] == "bearer"
    assert schemes["JWTAuth"]["type"] == "http" and schemes["JWTAuth"]["scheme"] == "bearer"
    assert "ragflow-" in schemes["ApiKeyAuth"]["bearerFormat"]
    assert schemes["JWTAuth"]["bearerFormat"] == "JWT"


def test_both_schemes_are_used_as_alternatives_not_together(doc):
    used = set()
    for path, method, operation in operations(doc):
        for requirement in operation.get("security", []):
            # One header carries one credential: a requirement naming both schemes
            # would tell code generators to send an API key AND a JWT at once.
            assert len(requirement) <= 1, (path, method, requirement)
            used |= set(requirement)
    assert used == {"ApiKeyAuth", "JWTAuth"}
    ping = doc["paths"]["/v1/test/deprecated-ping"]["get"]
    assert ping["security"] == [{"ApiKeyAuth": []}, {"JWTAuth": []}]


def test_key_management_documents_the_jwt_only(doc):
    for method, operation in doc["paths"]["/v1/api-keys"].items():
        assert operation["security"] == [{"JWTAuth": []}], method
    for method, operation in doc["paths"]["/v1/api-keys/{id}"].items():
        assert operation["security"] == [{"JWTAuth": []}], method


def test_public_operations_need_no_credential(doc):
    for path in ("/v1/health", "/v1/auth/token", "/v1/auth/token/refresh"):
        for operation in doc["paths"][path].values():
            assert operation.get("security", []) in ([], [{}]), path
    assert "security" not in doc  # no global requirement silently applies to them


def test_every_success_json_response_is_the_envelope(doc):
    seen = 0
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            if status == "204":
                continue
            schema = resolve_ref(doc, response["content"]["application/json"]["schema"])
            assert set(schema["required"]) == {"code", "data", "message"}, (path, method)
            assert schema["properties"]["code"]["enum"] == [0], (path, method)
            assert "data" in schema["properties"], (path, method)
            seen += 1
    assert seen >= 8


def test_success_data_is_typed(doc):
    created = doc["paths"]["/v1/api-keys"]["post"]["responses"]["201"]["content"]["application/json"]
    data = resolve_ref(doc, created["schema"]["properties"]["data"])
    assert "key" in data["properties"] and "key_hash" not in data["properties"]

    listed = doc["paths"]["/v1/api-keys"]["get"]["responses"]["200"]["content"]["application/json"]
    page = resolve_ref(doc, listed["schema"]["properties"]["data"])
    assert set(page["required"]) == {"items", "next_cursor"}
    item = resolve_ref(doc, page["properties"]["items"]["items"])
    assert "key" not in item["properties"] and "key_hash" not in item["properties"]

    token = doc["paths"]["/v1/auth/token"]["post"]["responses"]["200"]["content"]["application/json"]
    pair = resolve_ref(doc, token["schema"]["properties"]["data"])
    assert {"access", "refresh"} <= set(pair["properties"])


def test_every_error_response_is_the_error_envelope(doc):
    seen = 0
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            if status == "304":  # Not Modified on a conditional read: no body at all
                assert "content" not in response and "ETag" in response["headers"], (path, method)
                continue
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorEnvelope"
            }, (path, method, status)
            seen += 1
    assert seen > 0
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == {"code", "data", "message"}
    assert set(envelope["properties"]["code"]["enum"]) == {m.code for m in ErrorCode}
    assert envelope["properties"]["data"]["required"] == ["request_id"]


def test_operations_list_the_errors_they_can_answer_with(doc):
    for path, method, operation in operations(doc):
        statuses = set(operation["responses"])
        assert {"400", "406", "500"} <= statuses, (path, method)
        if operation.get("security"):
            assert {"401", "403"} <= statuses, (path, method)
        if "{" in path:
            assert "404" in statuses, (path, method)
    # Errors a public operation answers with although it needs no credential.
    assert "401" in doc["paths"]["/v1/auth/token"]["post"]["responses"]  # 10014
    assert "401" in doc["paths"]["/v1/auth/token/refresh"]["post"]["responses"]  # 10011, 10013
    assert "503" in doc["paths"]["/v1/health"]["get"]["responses"]  # 20002


def test_every_operation_answers_an_unsatisfiable_accept_with_the_documented_406(client, alice, doc):
    """What the document says every operation can answer, each one does (before any lookup of its ids)."""
    seen = 0
    for path, method, operation in operations(doc):
        url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)
        body = {} if method in ("get", "delete") else {"data": "{}", "content_type": "application/json"}
        response = getattr(client, method)(url, HTTP_ACCEPT="text/html", **body, **alice.key_auth)
        assert (response.status_code, response.json()["code"]) == (406, 10051), (method, path)
        assert "406" in operation["responses"], (method, path)
        seen += 1
    assert seen >= 20


def test_the_description_holds_the_whole_error_code_table(doc):
    description = doc["info"]["description"]
    for member in ErrorCode:
        row = f"| {member.code} | {member.status} | `{member.slug}` |"
        assert row in description, member


def test_operation_ids_are_unique_and_fit_for_code_generation(doc):
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]*", operation_id), operation_id


def test_the_deprecated_operation_is_marked_and_others_are_not(doc):
    ping = doc["paths"]["/v1/test/deprecated-ping"]["get"]
    assert ping["deprecated"] is True
    assert "2027-06-30" in ping["description"]
    others = [(p, m) for p, m, op in operations(doc) if op.get("deprecated") and p != "/v1/test/deprecated-ping"]
    assert others == []


# --- the document says what the server does ---------------------------------------


def test_every_limit_parameter_states_the_bounds_the_server_enforces(doc, settings):
    seen = 0
    for path, method, operation in operations(doc):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] == "limit":
                schema = parameter["schema"]
                assert (schema["type"], schema.get("minimum"), schema.get("maximum")) == (
                    "integer", 1, settings.API_PAGE_SIZE_MAX), (path, method)
                seen += 1
    assert seen >= 8  # the lists, and the message pages of a session


def test_completions_document_the_one_request_media_type_they_take(api, alice, doc):
    operation = doc["paths"]["/v1/combo/agents/{agent_id}/completions"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json"}
    _, agent, _ = api.post("/v1/combo/agents", {"name": "a"}, auth=alice.key_auth)
    status, body, _ = api.post(
        f"/v1/combo/agents/{agent['data']['id']}/completions", raw=b"question=hi",
        content_type="application/x-www-form-urlencoded", auth=alice.key_auth,
    )
    assert (status, body["code"]) == (415, ErrorCode.UNSUPPORTED_MEDIA_TYPE.code)


def test_a_nested_validation_error_matches_the_documented_error_envelope(api, alice, doc):
    status, body, _ = api.post("/v1/combo/agents", {"name": "a", "llm": {"colour": "red"}}, auth=alice.key_auth)
    assert status == 400 and body["data"]["errors"] == {"llm": {"colour": ["Unknown field."]}}
    OAS30Validator(doc["components"]["schemas"]["ErrorEnvelope"]).validate(body)


def test_request_bodies_that_refuse_unknown_fields_say_so(api, alice, doc):
    schemas = doc["components"]["schemas"]
    for name in ("AgentRequest", "PatchedAgentRequest", "LLMChoiceRequest", "CompletionRequestRequest",
                 "WebhookRequest", "PatchedWebhookRequest", "ApiKeyCreateRequest", "SessionRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    # Response schemas stay open: a client must tolerate a field added later.
    assert "additionalProperties" not in schemas["Agent"]
    status, body, _ = api.post("/v1/combo/agents", {"name": "a", "colour": "red"}, auth=alice.key_auth)
    assert (status, body["data"]["errors"]) == (400, {"colour": ["Unknown field."]})


def test_no_schema_borrows_a_shared_helpers_docstring_as_its_description(doc):
    leaked = [name for name, schema in doc["components"]["schemas"].items()
              if "typo must not pass" in schema.get("description", "")]
    assert leaked == []


# --- Swagger UI, offline ------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.fixture(scope="session")
def collected_static_root(tmp_path_factory):
    # What `make run` does before serving; collected once, into pytest's own
    # temporary folder (cleaned by pytest), not the test data dir.
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", interactive=False, verbosity=0)
    return root


@pytest.fixture
def collected_static(settings, collected_static_root):
    # Whitenoise reads STATIC_ROOT when the test client builds its middleware.
    settings.STATIC_ROOT = collected_static_root


def test_the_docs_page_references_no_external_host(api, db):
    status, _, response = api.get("/v1/docs")
    assert status == 200 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    parser = _Assets()
    parser.feed(html)
    assert parser.urls, "expected the page to load Swagger UI's script and style"
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    # The init script is served separately (no inline script under the CSP).
    script = api.client.get("/v1/docs?script=").content.decode()
    assert 'url: "/v1/openapi.json"' in script
    # StandaloneLayout would add the online validator badge, which fetches
    # validator.swagger.io; BaseLayout has none.
    assert 'layout: "BaseLayout"' in script and "StandaloneLayout" not in script + html


def test_the_docs_assets_are_served_with_debug_off(api, db, settings, collected_static):
    assert settings.DEBUG is False
    _, _, response = api.get("/v1/docs")
    parser = _Assets()
    parser.feed(response.content.decode())
    kinds = set()
    for url in parser.urls:
        asset = api.client.get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert len(body) > 100, url
        kinds.add(url.rsplit(".", 1)[-1])
    assert {"js", "css", "png"} <= kinds



def test_every_id_in_a_path_is_typed_as_a_uuid(doc):
    untyped = [
        (method, path, parameter["name"], parameter["schema"])
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and (parameter["name"] == "id" or parameter["name"].endswith("_id"))
        and parameter["schema"] != {"type": "string", "format": "uuid"}
    ]
    assert untyped == []
