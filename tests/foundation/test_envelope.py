"""Every /v1 answer wears the envelope (API.md), errors included, and carries X-Request-Id.

The error classes: unknown path, wrong method, malformed or non-object JSON,
wrong content type, oversized body, validation errors, unexpected crashes
(in DRF views and in plain Django views). Failed requests write nothing.
"""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from accounts.models import ApiKey
from agents.models import Agent
from combo.errors import ErrorCode
from tests.foundation.helpers import assert_error, assert_ok

# --- success -----------------------------------------------------------------


def test_a_success_is_code_zero_data_and_ok(api, db):
    status, body, response = api.get("/v1/health")
    data = assert_ok(status, body, response)
    assert data["status"] == "ok"


def test_a_created_object_is_wrapped_too(api, alice):
    status, body, response = api.post("/v1/api-keys", {"name": "ci"}, auth=alice.jwt_auth)
    data = assert_ok(status, body, response, http=201)
    assert data["name"] == "ci"


def test_no_cache_may_keep_an_answer_least_of_all_a_secret_shown_once(api, alice):
    """One user's data, and new API keys, webhook secrets and JWTs (RFC 6749 5.1): `Cache-Control: no-store`."""
    status, body, response = api.post("/v1/api-keys", {"name": "ci"}, auth=alice.jwt_auth)
    assert status == 201 and body["data"]["key"].startswith("ragflow-")
    answers = [response]
    answers.append(api.post("/v1/auth/token", {"username": "alice", "password": "correct horse battery"})[2])
    answers.append(api.get("/v1/combo/agents", auth=alice.key_auth)[2])
    answers.append(api.get("/v1/nothing-here")[2])  # an error, answered outside DRF
    for answer in answers:
        assert answer["Cache-Control"] == "no-store", answer.wsgi_request.path
    # The OpenAPI document is public and the same for everyone: left to its own caching.
    assert "no-store" not in api.get("/v1/openapi.json")[2].get("Cache-Control", "")


# --- unknown paths and wrong methods -------------------------------------------


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v1/api-keys/x/y", "/v1", "/v1/combo/agents-typo"])
def test_an_unknown_v1_path_is_a_404_envelope(api, db, path):
    status, body, response = api.get(path)
    assert_error(status, body, response, ErrorCode.NOT_FOUND)


def test_an_unknown_path_outside_v1_is_left_alone(api, db):
    # Only /v1 promises the envelope; the console and admin keep Django's pages.
    status, body, _response = api.get("/not-an-api-path")
    assert status == 404
    assert body is None


def test_a_wrong_method_is_a_405_envelope_that_keeps_allow(api, db):
    status, body, response = api.call("PUT", "/v1/health", {"x": 1})
    assert_error(status, body, response, ErrorCode.METHOD_NOT_ALLOWED)
    allowed = {m.strip() for m in response["Allow"].split(",")}
    assert "GET" in allowed and "PUT" not in allowed


def test_a_wrong_method_on_a_viewset_is_a_405_envelope(api, alice):
    status, body, response = api.delete("/v1/api-keys", auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.METHOD_NOT_ALLOWED)
    allowed = {m.strip() for m in response["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed and "DELETE" not in allowed
    assert ApiKey.objects.filter(owner=alice.user, revoked_at__isnull=True).count() == 1


# --- bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"name": ', b"{'name': 'single quotes'}", b'{"name": NaN}', b"\xff\xfe not utf-8"],
    ids=["truncated", "single-quotes", "nan", "not-utf8"],
)
def test_malformed_json_is_10002_and_writes_nothing(api, alice, raw):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", raw=raw, auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.MALFORMED_BODY)
    assert ApiKey.objects.count() == before


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"name": ' + b"[" * 100_000, b'{"a":' * 50_000])
def test_json_nested_too_deeply_is_10002_not_a_crash(api, alice, raw):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", raw=raw, auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.MALFORMED_BODY)
    assert "nested" in body["message"]
    assert ApiKey.objects.count() == before


def test_a_number_with_too_many_digits_is_10002_in_the_clients_terms(api, alice):
    status, body, response = api.post("/v1/api-keys", raw=b'{"name": "k", "n": ' + b"7" * 5000 + b"}",
                                      auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.MALFORMED_BODY)
    # Not Python's own advice ("use sys.set_int_max_str_digits() to increase the limit").
    assert body["message"] == "The request body has a number of more than 4300 digits."


def test_a_406_for_an_unsatisfiable_accept_header_is_an_envelope(api, db):
    status, body, response = api.get("/v1/health", HTTP_ACCEPT="application/xml")
    assert_error(status, body, response, ErrorCode.NOT_ACCEPTABLE)


def test_malformed_json_is_10002_before_any_login(api, alice):
    status, body, response = api.post("/v1/auth/token", raw=b'{"username": "alice",')
    assert_error(status, body, response, ErrorCode.MALFORMED_BODY)


@pytest.mark.parametrize("raw", [b"[]", b'[{"name": "x"}]', b'"name"', b"42", b"null"])
def test_json_that_is_not_an_object_is_10002(api, alice, raw):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", raw=raw, auth=alice.jwt_auth)
    data = assert_error(status, body, response, ErrorCode.MALFORMED_BODY)
    assert "object" in body["message"]
    assert "errors" not in data
    assert ApiKey.objects.count() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml"])
def test_a_wrong_content_type_is_415(api, alice, content_type):
    before = ApiKey.objects.count()
    status, body, response = api.post(
        "/v1/api-keys", raw=b'{"name": "x"}', content_type=content_type, auth=alice.jwt_auth
    )
    assert_error(status, body, response, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    assert content_type in body["message"]
    assert ApiKey.objects.count() == before


def test_a_body_over_the_configured_limit_is_413(api, alice):
    before = ApiKey.objects.count()
    with override_settings(API_MAX_JSON_BYTES=2048):
        status, body, response = api.post("/v1/api-keys", {"name": "x" * 3000}, auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.PAYLOAD_TOO_LARGE)
    assert "2048" in body["message"]
    assert ApiKey.objects.count() == before


def test_a_body_over_the_default_megabyte_is_413_even_unauthenticated(api, db, settings):
    assert settings.API_MAX_JSON_BYTES == 1024 * 1024
    raw = json.dumps({"username": "a" * (1024 * 1024), "password": "p"}).encode()
    status, body, response = api.post("/v1/auth/token", raw=raw)
    assert_error(status, body, response, ErrorCode.PAYLOAD_TOO_LARGE)


def test_a_body_just_under_the_limit_is_read(api, alice):
    with override_settings(API_MAX_JSON_BYTES=2048):
        raw = json.dumps({"name": "x" * 1900}).encode()
        assert len(raw) <= 2048
        status, body, response = api.post("/v1/api-keys", raw=raw, auth=alice.jwt_auth)
    # Read and validated (the name is too long for the field), not refused as too large.
    assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)


def test_a_non_numeric_content_length_is_a_400_envelope(api, alice):
    status, body, response = api.post(
        "/v1/api-keys", {"name": "x"}, auth=alice.jwt_auth, CONTENT_LENGTH="lots"
    )
    assert_error(status, body, response, ErrorCode.BAD_REQUEST)


def test_a_form_body_with_too_many_fields_is_a_400_envelope_not_a_crash(api, alice, settings):
    raw = "&".join(f"name={i}" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)).encode()
    before = Agent.objects.count()
    status, body, response = api.post(
        "/v1/combo/agents", raw=raw, content_type="application/x-www-form-urlencoded", auth=alice.key_auth
    )
    assert_error(status, body, response, ErrorCode.BAD_REQUEST)
    assert "too many fields" in body["message"]
    assert Agent.objects.count() == before


def test_a_query_string_with_too_many_fields_is_a_400_envelope(api, alice, settings):
    query = "&".join(f"x={i}" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    status, body, response = api.get(f"/v1/combo/agents?{query}", auth=alice.key_auth)
    assert_error(status, body, response, ErrorCode.BAD_REQUEST)


# --- validation -------------------------------------------------------------


def test_a_missing_field_is_10001_with_per_field_errors(api, alice):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", {}, auth=alice.jwt_auth)
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert list(data["errors"]) == ["name"]
    assert all(isinstance(m, str) for m in data["errors"]["name"])
    assert "name" in body["message"]
    assert ApiKey.objects.count() == before


def test_every_bad_field_is_listed(api, alice):
    before = ApiKey.objects.count()
    status, body, response = api.post(
        "/v1/api-keys", {"name": "", "expires_at": "next tuesday"}, auth=alice.jwt_auth
    )
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert set(data["errors"]) == {"name", "expires_at"}
    assert ApiKey.objects.count() == before


def test_an_unknown_field_is_10001_not_silently_dropped(api, alice):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", {"name": "ci", "colour": "red"}, auth=alice.jwt_auth)
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert list(data["errors"]) == ["colour"]
    assert ApiKey.objects.count() == before


def test_a_read_only_field_sent_by_the_client_is_refused(api, alice):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", {"name": "ci", "prefix": "ragflow-mine"}, auth=alice.jwt_auth)
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert list(data["errors"]) == ["prefix"]
    assert ApiKey.objects.count() == before


def test_a_string_over_its_max_length_is_10001(api, alice):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", {"name": "n" * 101}, auth=alice.jwt_auth)
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert "100" in data["errors"]["name"][0]
    assert ApiKey.objects.count() == before
    # 100 is fine: the limit is the column's.
    status, body, _ = api.post("/v1/api-keys", {"name": "n" * 100}, auth=alice.jwt_auth)
    assert status == 201
    assert ApiKey.objects.count() == before + 1


@pytest.mark.parametrize("name", [True, ["ci"], {"n": "ci"}, None])
def test_a_wrong_type_is_10001(api, alice, name):
    before = ApiKey.objects.count()
    status, body, response = api.post("/v1/api-keys", {"name": name}, auth=alice.jwt_auth)
    data = assert_error(status, body, response, ErrorCode.VALIDATION_FAILED)
    assert list(data["errors"]) == ["name"]
    assert ApiKey.objects.count() == before


# --- crashes -----------------------------------------------------------------


def test_an_unhandled_exception_is_a_500_envelope_without_the_traceback(api, alice, caplog):
    status, body, response = api.get("/v1/test/crash", auth=alice.jwt_auth)
    assert_error(status, body, response, ErrorCode.INTERNAL_ERROR)
    # The log has the traceback, with the request id the caller was given: what support asks for.
    logged = [record for record in caplog.records if record.name == "combo.api"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert body["data"]["request_id"] in logged[0].getMessage()
    text = response.content.decode()
    for leak in ("hunter2", "secret-db-password", "Traceback", "RuntimeError", "File \""):
        assert leak not in text
    assert set(body["data"]) == {"request_id"}


@pytest.mark.urls("tests.foundation.urls")
def test_a_crash_in_a_plain_django_view_is_a_500_envelope_too(api, db, caplog):
    status, body, response = api.get("/v1/test/plain-crash")
    assert_error(status, body, response, ErrorCode.INTERNAL_ERROR)
    logged = [record for record in caplog.records if record.name == "combo.api"]
    assert len(logged) == 1 and body["data"]["request_id"] in logged[0].getMessage()
    text = response.content.decode()
    for leak in ("hunter2", "secret-db-password", "Traceback", "RuntimeError"):
        assert leak not in text


@pytest.mark.urls("tests.foundation.urls")
@pytest.mark.parametrize(
    "status, error",
    [
        (400, ErrorCode.BAD_REQUEST),
        (401, ErrorCode.UNAUTHENTICATED),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.NOT_FOUND),
        (405, ErrorCode.METHOD_NOT_ALLOWED),
        (406, ErrorCode.NOT_ACCEPTABLE),
        (409, ErrorCode.CONFLICT),
        (413, ErrorCode.PAYLOAD_TOO_LARGE),
        (415, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
        (429, ErrorCode.RATE_LIMITED),
        (500, ErrorCode.INTERNAL_ERROR),
        (502, ErrorCode.UPSTREAM_ERROR),
        (503, ErrorCode.SERVICE_UNAVAILABLE),
        (504, ErrorCode.UPSTREAM_TIMEOUT),
    ],
)
def test_a_non_json_error_from_outside_drf_keeps_its_status_in_the_envelope(api, db, status, error):
    status_, body, response = api.get(f"/v1/test/plain-status/{status}")
    assert_error(status_, body, response, error)
    assert "secret-internal-detail" not in response.content.decode()
    if status == 429:
        assert response["Retry-After"] == "17"


@pytest.mark.urls("tests.foundation.urls")
@pytest.mark.parametrize("status", [410, 418, 422])
def test_an_unlisted_4xx_from_outside_drf_stays_a_client_error(api, db, status):
    # Not turned into a 500 "our fault": the class of the status is kept.
    status_, body, response = api.get(f"/v1/test/plain-status/{status}")
    assert_error(status_, body, response, ErrorCode.BAD_REQUEST)


# --- X-Request-Id --------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123_XYZ.def:1", "0" * 128, "01J9ZK3Q4M5N6P7R8S9T0V1W2X"])
def test_a_sane_request_id_is_echoed(api, db, incoming):
    _, _, response = api.get("/v1/health", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-Id"] == incoming
    _status, body, response = api.get("/v1/nothing-here", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-Id"] == incoming
    assert body["data"]["request_id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["has spaces in it", "line\nbreak-injected", "x" * 129, "short", "tab\there-ok", "semi;colon;here", "ünïcödé-id"],
)
def test_an_insane_request_id_is_replaced(api, db, incoming):
    _status, body, response = api.get("/v1/nothing-here", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-Id"] != incoming
    assert response["X-Request-Id"].startswith("req_")
    assert body["data"]["request_id"] == response["X-Request-Id"]


def test_each_request_gets_its_own_id(api, db):
    ids = {api.get("/v1/health")[2]["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/v1/docs", "/admin/login/"])
def test_responses_outside_the_envelope_still_carry_a_request_id(api, db, path):
    _, _, response = api.get(path)
    assert response["X-Request-Id"].startswith("req_")
