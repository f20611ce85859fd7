"""A JSON body's values must already be of the type the OpenAPI document gives them: nothing is coerced."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from agents.models import Agent
from combo.errors import ErrorCode
from tests.agents.test_agents_api import make_agent
from tests.foundation.helpers import assert_error


@pytest.mark.parametrize("body, field, message", [
    ({"name": 123}, "name", "Not a valid string."),
    ({"name": 12.5}, "name", "Not a valid string."),
    ({"name": "A", "instructions": ["x"]}, "instructions", "Not a valid string."),
    ({"name": "A", "llm": {"temperature": True}}, "llm", "A valid number is required."),
    ({"name": "A", "llm": {"temperature": "0.5"}}, "llm", "A valid number is required."),
    ({"name": "A", "llm": {"max_tokens": "256"}}, "llm", "A valid integer is required."),
    ({"name": "A", "llm": {"max_tokens": 2.5}}, "llm", "A valid integer is required."),
    ({"name": "A", "llm": {"provider": 1}}, "llm", "Not a valid string."),
    # The items of a list too: 1 and true were read as the UUID 00000000-...-000000000001.
    ({"name": "A", "file_ids": [1]}, "file_ids", "Must be a valid UUID."),
    ({"name": "A", "file_ids": [True]}, "file_ids", "Must be a valid UUID."),
])
def test_an_agent_field_of_another_json_type_is_10001(api, alice, body, field, message):
    status, envelope, response = api.post("/v1/combo/agents", body, auth=alice.key_auth)
    data = assert_error(status, envelope, response, ErrorCode.VALIDATION_FAILED)
    assert list(data["errors"]) == [field]
    assert message in str(data["errors"][field])
    assert not Agent.objects.exists()


def test_numbers_of_either_json_kind_are_numbers(api, alice):
    data = make_agent(api, alice, llm={"provider": "builtin", "temperature": 1, "max_tokens": 64})
    assert data["llm"]["temperature"] == 1.0 and data["llm"]["max_tokens"] == 64


@pytest.mark.parametrize("body, field, message", [
    ({"question": 123}, "question", "Not a valid string."),
    ({"question": "hi", "stream": "yes"}, "stream", "Must be a valid boolean."),
    ({"question": "hi", "stream": 1}, "stream", "Must be a valid boolean."),
    ({"question": "hi", "stream": "true"}, "stream", "Must be a valid boolean."),
    ({"question": "hi", "session_id": 123}, "session_id", "Must be a valid UUID."),
])
def test_a_completion_field_of_another_json_type_is_10001_in_both_modes(api, alice, body, field, message):
    agent = make_agent(api, alice, llm={"provider": "builtin"})["id"]
    status, envelope, response = api.post(f"/v1/combo/agents/{agent}/completions", body, auth=alice.key_auth)
    data = assert_error(status, envelope, response, ErrorCode.VALIDATION_FAILED)
    assert data["errors"] == {field: [message]}


def test_an_api_key_name_that_is_not_a_string_is_10001(api, alice):
    status, envelope, response = api.post("/v1/api-keys", {"name": 7}, auth=alice.jwt_auth)
    data = assert_error(status, envelope, response, ErrorCode.VALIDATION_FAILED)
    assert data["errors"] == {"name": ["Not a valid string."]}


def test_a_form_body_still_carries_its_values_as_strings(api, alice):
    status, envelope, _ = api.post(
        "/v1/combo/agents", raw=urlencode({"name": "123"}).encode(),
        content_type="application/x-www-form-urlencoded", auth=alice.key_auth,
    )
    assert status == 201, envelope
    assert envelope["data"]["name"] == "123"
    form = {"name": "f", "agent_id": envelope["data"]["id"], "enabled": "false", "require_timestamp": "true"}
    status, envelope, _ = api.post(
        "/v1/integrations/webhooks", raw=urlencode(form).encode(),
        content_type="application/x-www-form-urlencoded", auth=alice.key_auth,
    )
    assert status == 201, envelope
    assert envelope["data"]["enabled"] is False and envelope["data"]["require_timestamp"] is True


@pytest.mark.parametrize("extra, field, message", [
    ({"remember_me": True}, "remember_me", "Unknown field."),
    ({"username": 42}, "username", "Not a valid string."),
])
def test_signing_in_takes_exactly_a_username_and_a_password(api, alice, extra, field, message):
    body = {"username": "alice", "password": "correct horse battery", **extra}
    status, envelope, response = api.post("/v1/auth/token", body)
    data = assert_error(status, envelope, response, ErrorCode.VALIDATION_FAILED)
    assert data["errors"] == {field: [message]}


def test_refreshing_takes_exactly_a_refresh_token(api, alice):
    _, signed_in, _ = api.post("/v1/auth/token", {"username": "alice", "password": "correct horse battery"})
    refresh = signed_in["data"]["refresh"]
    status, envelope, response = api.post("/v1/auth/token/refresh", {"refresh": refresh, "x": 1})
    data = assert_error(status, envelope, response, ErrorCode.VALIDATION_FAILED)
    assert data["errors"] == {"x": ["Unknown field."]}
    status, envelope, _ = api.post("/v1/auth/token/refresh", {"refresh": refresh})
    assert status == 200 and envelope["data"]["access"]
