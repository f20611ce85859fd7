"""A Postman collection (v2.1) built from the live OpenAPI document, so it never drifts.

`collection_from_openapi()` is a pure function of the document and the
deployment's /v1 URL; the console's API page serves it at request time
(combo.console.postman_collection). The shape:

- one folder per OpenAPI tag, one request per operation, in the document's
  order except that DELETEs come last in their folder, so running the whole
  collection reads and updates an object before deleting it;
- collection variables: `base_url` (this deployment's /v1), `api_key`, and
  one per path variable. A bare `{id}` is named after the resource before it
  (`/combo/agents/{id}` uses `{{agent_id}}`), so one variable means one thing
  across the whole collection;
- collection-level bearer auth `{{api_key}}`; operations the document marks
  as needing no credential (health, token issuing) say `noauth`;
- a JSON example body from each request schema (required properties, filled
  from `example`, `default`, the first `enum` value or a placeholder by type);
  a multipart-only operation (file upload) gets a `formdata` body, its binary
  fields as file fields;
- a collection-level test that no response is a 5xx, and on each "create"
  operation a test that keeps the new object's id in its variable, so the
  requests after it in a run use the object just made;
- on each DELETE a pre-request script that skips it unless its object was
  created by the same run: a run never deletes what a caller named.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
METHODS = ("get", "post", "put", "patch", "delete")
_PATH_VAR = re.compile(r"\{([^}/]+)\}")
_MAX_DEPTH = 6


# --- Naming -----------------------------------------------------------------

def singular(segment: str) -> str:
    """`agents` -> `agent`, `api-keys` -> `api_key`, `deliveries` -> `delivery`."""
    word = segment.replace("-", "_")
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def variable_names(path: str) -> dict[str, str]:
    """Path parameter -> collection variable for one OpenAPI path."""
    names: dict[str, str] = {}
    segments = path.strip("/").split("/")
    for index, segment in enumerate(segments):
        match = _PATH_VAR.fullmatch(segment)
        if not match:
            continue
        param = match.group(1)
        if param == "id" and index > 0 and not _PATH_VAR.fullmatch(segments[index - 1]):
            names[param] = f"{singular(segments[index - 1])}_id"
        else:
            names[param] = param
    return names


def created_variable(path: str) -> str | None:
    """The variable a POST to a collection path creates: `/combo/agents` -> `agent_id`."""
    last = path.rstrip("/").split("/")[-1]
    if not last or _PATH_VAR.fullmatch(last):
        return None
    return f"{singular(last)}_id"


_ACTIONS = (
    ("partial_update", "Update"), ("update", "Replace"), ("destroy", "Delete"),
    ("retrieve", "Get"), ("create", "Create"), ("list", "List"),
)


def request_name(path: str, method: str, operation: dict, shown_path: str) -> str:
    """The summary, else a name from a viewset's operation id (`combo_agents_list` -> `List agents`)."""
    if operation.get("summary"):
        return operation["summary"]
    operation_id = operation.get("operationId", "")
    literals = [s for s in path.strip("/").split("/") if s and not _PATH_VAR.fullmatch(s)]
    resource = literals[-1] if literals else ""
    for suffix, verb in _ACTIONS:
        # Only plural collection names read well ("List agents"; not "Create refresh").
        if operation_id.endswith("_" + suffix) and resource.endswith("s"):
            words = resource.replace("-", " ")
            noun = words if suffix == "list" else singular(resource).replace("_", " ")
            return f"{verb} {noun}"
    return f"{method.upper()} {shown_path}"


def relative_path(path: str, prefix: str) -> str:
    """The operation's path below `base_url` (which already ends in the /v1 prefix)."""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix):]
    return path


# --- Example bodies -----------------------------------------------------------

class _Resolver:
    def __init__(self, document: dict):
        self.document = document

    def resolve(self, schema: dict | None) -> dict:
        seen = set()
        schema = schema or {}
        while "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return {}
            seen.add(ref)
            node: Any = self.document
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            schema = node
        if "allOf" in schema:
            merged: dict = {"type": "object", "properties": {}, "required": []}
            for part in schema["allOf"]:
                part = self.resolve(part)
                merged["properties"].update(part.get("properties", {}))
                merged["required"] += part.get("required", [])
                for key in ("example", "default", "type", "format", "enum"):
                    if key in part:
                        merged[key] = part[key]
            return merged
        for key in ("oneOf", "anyOf"):
            if schema.get(key):
                return self.resolve(schema[key][0])
        return schema

    def example(self, schema: dict | None, name: str = "value", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        for key in ("example", "default"):
            if key in schema:
                return schema[key]
        if schema.get("enum"):
            return schema["enum"][0]
        kind = schema.get("type")
        if isinstance(kind, list):  # OpenAPI 3.1 ["string", "null"]
            kind = next((k for k in kind if k != "null"), None)
        if kind is None and "properties" in schema:
            kind = "object"
        if kind == "object":
            if depth >= _MAX_DEPTH:
                return {}
            properties = schema.get("properties", {})
            return {
                prop: self.example(properties.get(prop), prop, depth + 1)
                for prop in schema.get("required", [])
                if not self.resolve(properties.get(prop)).get("readOnly")
            }
        if kind == "array":
            if depth >= _MAX_DEPTH or not schema.get("minItems"):
                return []
            return [self.example(schema.get("items"), name, depth + 1)] * schema["minItems"]
        if kind == "integer":
            return schema.get("minimum", 1)
        if kind == "number":
            return schema.get("minimum", 0)
        if kind == "boolean":
            return False
        return _string_placeholder(schema, name)


def _string_placeholder(schema: dict, name: str) -> str:
    by_format = {
        "date-time": "2030-01-01T00:00:00Z",
        "date": "2030-01-01",
        "email": "user@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    text = by_format.get(schema.get("format", ""), f"<{name}>")
    if schema.get("maxLength") is not None:
        text = text[: schema["maxLength"]]
    return text


# --- Requests ---------------------------------------------------------------

def _needs_no_auth(operation: dict, document: dict) -> bool:
    security = operation.get("security", document.get("security"))
    return not security or all(not requirement for requirement in security)


def _url(path: str, variables: dict[str, str], operation: dict, path_item: dict) -> dict:
    postman_path = _PATH_VAR.sub(lambda m: "{{" + variables[m.group(1)] + "}}", path)
    segments = [s for s in postman_path.split("/") if s]
    url: dict[str, Any] = {"raw": "{{base_url}}" + postman_path, "host": ["{{base_url}}"], "path": segments}
    parameters = list(path_item.get("parameters", [])) + list(operation.get("parameters", []))
    query = [
        {"key": p["name"], "value": "", "disabled": True, "description": p.get("description", "")}
        for p in parameters
        if p.get("in") == "query"
    ]
    if query:
        url["query"] = query
    return url


def _body(operation: dict, resolver: _Resolver) -> tuple[dict | None, list[dict]]:
    content = (operation.get("requestBody") or {}).get("content") or {}
    json_type = next((t for t in content if t == "application/json" or t.endswith("+json")), None)
    if json_type is not None:
        media = content[json_type]
        example = media.get("example")
        if example is None:
            example = resolver.example(media.get("schema"), "body")
        body = {
            "mode": "raw",
            "raw": json.dumps(example, indent=2, ensure_ascii=False),
            "options": {"raw": {"language": "json"}},
        }
        return body, [{"key": "Content-Type", "value": json_type}]
    if "multipart/form-data" in content:
        schema = resolver.resolve(content["multipart/form-data"].get("schema"))
        fields = []
        for prop, prop_schema in schema.get("properties", {}).items():
            prop_schema = resolver.resolve(prop_schema)
            if prop_schema.get("format") == "binary" or prop_schema.get("contentMediaType"):
                fields.append({"key": prop, "type": "file", "src": []})
            else:
                value = resolver.example(prop_schema, prop)
                fields.append({"key": prop, "value": value if isinstance(value, str) else json.dumps(value),
                               "type": "text"})
        return {"mode": "formdata", "formdata": fields}, []
    return None, []


def _created_key(variable: str) -> str:
    return f"created:{variable}"


def _capture_script(variable: str) -> dict:
    """Keeps a created object's id in `variable` for the requests after it, and notes it was made by this run.

    Also over a value given on the command line (`newman --env-var`, which
    outranks collection variables), so the later requests act on the new
    object, not on the caller's.
    """
    name, created = json.dumps(variable), json.dumps(_created_key(variable))
    return _script("test", [
        "if (pm.response.code === 201) {",
        "    const body = pm.response.json();",
        "    if (body && body.data && body.data.id) {",
        f"        pm.collectionVariables.set({name}, body.data.id);",
        f"        pm.collectionVariables.set({created}, body.data.id);",
        f"        if (pm.environment.has({name})) {{ pm.environment.set({name}, body.data.id); }}",
        "    }",
        "}",
    ])


def _delete_guard(variable: str) -> dict:
    """A DELETE runs only on an object this run created: never on one a caller named."""
    name, created = json.dumps(variable), json.dumps(_created_key(variable))
    return _script("prerequest", [
        f"const made = pm.collectionVariables.get({created});",
        f"if (!made || pm.variables.get({name}) !== made) {{",
        f"    console.log('Skipped: deletes only what this run created (' + {name} + ').');",
        "    pm.execution.skipRequest();",
        "}",
    ])


def _script(listen: str, lines: list[str]) -> dict:
    """A Postman event running `lines` of JavaScript (`test`: after the response; `prerequest`: before)."""
    return {"listen": listen, "script": {"type": "text/javascript", "exec": lines}}


def _request_item(path: str, method: str, operation: dict, path_item: dict, document: dict,
                  resolver: _Resolver, prefix: str) -> tuple[dict, set[str]]:
    variables = variable_names(path)
    shown_path = relative_path(path, prefix)
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": [{"key": "Accept", "value": "application/json"}],
        "url": _url(shown_path, variables, operation, path_item),
    }
    description = operation.get("description") or ""
    request["description"] = f"`{method.upper()} {path}` ({operation.get('operationId', '')})\n\n{description}".strip()
    body, headers = _body(operation, resolver)
    if body is not None:
        request["body"] = body
        request["header"] += headers
    if _needs_no_auth(operation, document):
        request["auth"] = {"type": "noauth"}
    item: dict[str, Any] = {
        "name": request_name(path, method, operation, shown_path),
        "request": request,
    }
    created = created_variable(path) if method == "post" else None
    if created and "201" in operation.get("responses", {}):
        item["event"] = [_capture_script(created)]
    if method == "delete" and variables:
        item["event"] = [_delete_guard(list(variables.values())[-1])]
    return item, set(variables.values())


def collection_from_openapi(document: dict, base_url: str, *, prefix: str = "/v1") -> dict:
    """The Postman v2.1 collection for `document`, pointed at `base_url` (ending in /v1)."""
    resolver = _Resolver(document)
    info = document.get("info", {})
    tag_descriptions = {t["name"]: t.get("description", "") for t in document.get("tags", [])}
    folders: dict[str, list[tuple[int, dict]]] = {}
    path_variables: list[str] = []
    for path, path_item in document.get("paths", {}).items():
        for method in METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            item, names = _request_item(path, method, operation, path_item, document, resolver, prefix)
            for name in sorted(names):
                if name not in path_variables:
                    path_variables.append(name)
            tag = (operation.get("tags") or ["default"])[0]
            # DELETEs last (sorted() is stable, so the rest keep the document's order).
            folders.setdefault(tag, []).append((1 if method == "delete" else 0, item))
    items = [
        {
            "name": tag,
            "description": tag_descriptions.get(tag, ""),
            "item": [item for _, item in sorted(entries, key=lambda entry: entry[0])],
        }
        for tag, entries in folders.items()
    ]
    variables = [
        {"key": "base_url", "value": base_url, "type": "string", "description": "This deployment's /v1 URL."},
        {"key": "api_key", "value": "", "type": "string",
         "description": "An API key (ragflow-...) from Personal settings → API keys."},
    ] + [{"key": name, "value": "", "type": "string"} for name in path_variables]
    return {
        "info": {
            # Stable per deployment, so re-importing updates the same collection.
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, base_url)),
            "name": info.get("title", "API"),
            "description": info.get("description", ""),
            "version": info.get("version", ""),
            "schema": SCHEMA_URL,
        },
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{api_key}}", "type": "string"}]},
        "event": [
            _script("test", [
                'pm.test("no server error", function () {',
                "    pm.expect(pm.response.code).to.be.below(500);",
                "});",
            ])
        ],
        "variable": variables,
        "item": items,
    }


def collection_for_request(request) -> dict:
    """The collection for this deployment, from the OpenAPI document generated now."""
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    return collection_from_openapi(document, request.build_absolute_uri("/v1"))
