"""Every error class the live server can be made to answer, and the code -> class table."""

import httpx
import pytest

from combo_sdk import (
    AuthenticationError,
    ClientError,
    ComboAgent,
    ComboAPIError,
    ComboError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UpstreamError,
    ValidationError,
)
from combo_sdk.errors import error_class, error_from_envelope

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def test_a_wrong_key_is_an_authentication_error_with_code_and_request_id(live):
    with ComboAgent(api_key="ragflow-" + "x" * 40, base_url=live.base_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.agents.create(name="nope")
    error = caught.value
    assert error.code == 10011 and error.status == 401
    assert error.request_id.startswith("req_")
    assert error.response.headers["X-Request-Id"] == error.request_id
    assert error.data["request_id"] == error.request_id
    assert isinstance(error, ClientError) and isinstance(error, ComboAPIError) and isinstance(error, ComboError)
    assert "10011" in str(error) and error.request_id in str(error)


def test_a_wrong_key_on_the_stream_path_is_an_authentication_error_too(live, agent):
    with ComboAgent(api_key="ragflow-" + "x" * 40, base_url=live.base_url) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.completions.create(agent_id=agent.id, question="hi", stream=True)
    assert caught.value.code == 10011 and caught.value.request_id


def test_no_credential_is_10010(live, monkeypatch):
    monkeypatch.delenv("COMBO_API_KEY", raising=False)
    with ComboAgent(base_url=live.base_url) as client:
        assert client.api_key is None
        with pytest.raises(AuthenticationError) as caught:
            list(client.agents.list())
    assert caught.value.code == 10010


def test_a_wrong_password_is_an_authentication_error(live):
    with ComboAgent(base_url=live.base_url, api_key=None) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.auth.token(username=live.username, password="not the password")
    assert caught.value.code == 10014


def test_an_api_key_cannot_manage_keys(client):
    with pytest.raises(PermissionDeniedError) as caught:
        list(client.api_keys.list())
    assert caught.value.code == 10031 and caught.value.status == 403 and caught.value.request_id


def test_an_unknown_agent_is_not_found(client):
    with pytest.raises(NotFoundError) as caught:
        client.agents.retrieve(UNKNOWN_ID)
    assert caught.value.code == 10040 and caught.value.status == 404
    with pytest.raises(NotFoundError):
        client.completions.create(agent_id=UNKNOWN_ID, question="hi")
    with pytest.raises(NotFoundError):
        client.sessions.create(agent_id=UNKNOWN_ID)
    with pytest.raises(NotFoundError):
        client.completions.create(session_id=UNKNOWN_ID, question="hi")


def test_an_id_cannot_reach_another_path(client):
    with pytest.raises(NotFoundError):
        client.agents.retrieve("../api-keys")


def test_an_empty_question_is_a_validation_error_naming_the_field(client, agent):
    with pytest.raises(ValidationError) as caught:
        client.completions.create(agent_id=agent.id, question="")
    error = caught.value
    assert error.code == 10001 and error.status == 400
    assert set(error.errors) == {"question"} and error.errors["question"]
    assert error.request_id
    with pytest.raises(ValidationError) as caught:
        client.completions.create(agent_id=agent.id, question="   ", stream=True)
    assert "question" in caught.value.errors


def test_an_invalid_agent_field_is_a_validation_error(client):
    with pytest.raises(ValidationError) as caught:
        client.agents.create(name="x", llm={"temperature": 5})
    assert "llm" in caught.value.errors


def test_upstream_failures_are_upstream_errors(client, make_agent):
    broken = make_agent(name="Broken model", llm={"provider": "openai"})
    with pytest.raises(UpstreamError) as caught:
        client.completions.create(agent_id=broken.id, question="hi")
    assert caught.value.code // 10000 == 3 and caught.value.request_id


def test_an_upstream_that_asked_to_wait_says_how_long(scripted):
    from tests.sdk.conftest import Reply, envelope

    busy = envelope(code=30003, message="The provider is rate limiting.", request_id="req_busy")
    busy["data"]["retry_after"] = 3
    server = scripted(Reply(503, busy, headers={"Retry-After": "3", "X-Request-Id": "req_busy"}))
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=0) as client:
        with pytest.raises(UpstreamError) as caught:
            client.completions.create(agent_id=UNKNOWN_ID, question="hi")
    assert (caught.value.code, caught.value.retry_after) == (30003, 3.0)
    other = error_from_envelope(envelope(code=30001, message="x", request_id="r"), status=502)
    assert isinstance(other, UpstreamError) and other.retry_after is None


def test_server_faults_are_server_errors(scripted):
    from tests.sdk.conftest import Reply, envelope

    server = scripted(
        Reply(500, envelope(code=20001, message="Something went wrong on our side.", request_id="req_abc123"),
              headers={"X-Request-Id": "req_abc123"})
    )
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            client.agents.retrieve(UNKNOWN_ID)
    assert caught.value.code == 20001 and caught.value.status == 500 and caught.value.request_id == "req_abc123"


def test_a_non_envelope_error_still_maps_by_status(scripted):
    from tests.sdk.conftest import Reply

    server = scripted(Reply(502, b"<html>Bad Gateway</html>"))
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            client.agents.retrieve(UNKNOWN_ID)
    assert caught.value.status == 502 and caught.value.code is None


@pytest.mark.parametrize(
    "code, status, cls",
    [
        (10001, 400, ValidationError),
        (10002, 400, ClientError),
        (10010, 401, AuthenticationError),
        (10011, 401, AuthenticationError),
        (10012, 401, AuthenticationError),
        (10013, 401, AuthenticationError),
        (10014, 401, AuthenticationError),
        (10030, 403, PermissionDeniedError),
        (10031, 403, PermissionDeniedError),
        (10040, 404, NotFoundError),
        (10090, 429, RateLimitError),
        (10123, 413, ClientError),
        (10142, 401, AuthenticationError),  # by status: a code this SDK does not list
        (19999, 418, ClientError),  # an unknown future 1xxxx code
        (20001, 500, ServerError),
        (20003, 503, ServerError),
        (30001, 502, UpstreamError),
        (30002, 504, UpstreamError),
        (30003, 503, UpstreamError),
        (None, 500, ServerError),
        (None, 400, ClientError),
    ],
)
def test_each_code_maps_to_its_class(code, status, cls):
    assert error_class(code, status) is cls


def test_the_error_code_table_of_the_server_maps_to_the_right_classes():
    """Every code in combo/errors.py lands in its envelope class (1/2/3xxxx)."""
    from combo.errors import ErrorCode

    for member in ErrorCode:
        cls = error_class(member.code, member.status)
        expected = {1: ClientError, 2: ServerError, 3: UpstreamError}[member.code // 10000]
        assert issubclass(cls, expected), (member, cls)


def test_a_rate_limit_error_carries_retry_after():
    response = httpx.Response(
        429,
        headers={"Retry-After": "7", "X-Request-Id": "req_1"},
        json={"code": 10090, "message": "Too many requests.", "data": {"request_id": "req_1"}},
    )
    error = error_from_envelope(response.json(), status=429, request_id="req_1", retry_after=7.0)
    assert isinstance(error, RateLimitError) and error.retry_after == 7.0 and error.request_id == "req_1"
