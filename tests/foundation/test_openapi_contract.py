"""Every operation of /v1/openapi.json, driven with generated requests against a live server.

Schemathesis reads the document the server publishes and, for each
operation, sends requests built from its schemas (valid ones and edge cases
of them) to a live daphne, then checks what comes back against the same
document: no 5xx, only documented status codes and content types, bodies
and headers that match their schemas. The example count is small and fixed
(derandomized), so the run is repeatable; longer randomized runs go through
the schemathesis command line (README, Quick start).

Not checked here, on purpose: whether every schema-valid request is accepted
(many are refused by rules a schema cannot say, such as "this agent must be
yours") and whether every invalid one is refused (a form body's strings are
coerced, as forms are).
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.live import LiveCombo

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def live():
    combo = LiveCombo(env={
        # Hundreds of requests in a few seconds: the limits are not what this tests.
        **{f"COMBO_RATELIMIT_{name}": "1000000" for name in ("DEFAULT", "COMPLETIONS", "UPLOADS", "LOGIN", "WEBHOOK")},
    })
    combo.migrate()
    combo.api_key = combo.create_key("fuzz")
    combo.create_user("owner", "correct horse battery")
    combo.url = combo.start()
    with httpx.Client(base_url=combo.url) as http:
        response = http.post("/v1/auth/token", json={"username": "owner", "password": "correct horse battery"})
        assert response.status_code == 200, response.text
        combo.jwt = response.json()["data"]["access"]
    yield combo
    combo.stop()


def _document() -> dict:
    """The document as /v1/openapi.json serves it (built in-process: tests are generated at collection)."""
    from django.test import Client, override_settings

    with override_settings(ROOT_URLCONF="combo.urls"):  # the product's routes, not the test suite's extras
        response = Client().get("/v1/openapi.json")
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(max_examples=8, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
def test_the_server_answers_as_its_openapi_document_says(case, live):
    # Key management takes a JWT only (API.md); everything else is called with an API key.
    credential = live.jwt if case.path.startswith(("/v1/api-keys", "/v1/auth")) else live.api_key
    case.call_and_validate(base_url=live.url, headers={"Authorization": f"Bearer {credential}"}, checks=CHECKS)
