"""Retries, against small real HTTP servers that answer from a script.

429 is retried for every method after `Retry-After`; a refused connection for
every method; 502/503/504 and broken connections only for GET and DELETE;
never another POST, and never a stream that has started.
"""

import time

import pytest

from combo_sdk import (
    APIConnectionError,
    AsyncComboAgent,
    ComboAgent,
    RateLimitError,
    ServerError,
)
from combo_sdk._retry import RetryPolicy, parse_retry_after
from tests.sdk.conftest import Reply, envelope, free_port

AGENT = {"id": "a1", "name": "Reviewer"}
RATE_LIMITED = Reply(
    429, envelope(code=10090, message="Too many requests.", request_id="req_429"),
    headers={"Retry-After": "1", "X-Request-Id": "req_429"},
)
UNAVAILABLE = Reply(503, envelope(code=20002, message="A dependency of this service is down.", request_id="req_503"))


def test_a_429_is_retried_after_retry_after(scripted):
    server = scripted(RATE_LIMITED, Reply(200, envelope(AGENT)))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        started = time.monotonic()
        agent = client.agents.retrieve("a1")
        elapsed = time.monotonic() - started
    assert agent.name == "Reviewer"
    assert len(server.requests) == 2
    assert elapsed >= 0.95
    assert server.requests[1].at - server.requests[0].at >= 0.95


def test_a_429_on_a_post_is_retried_too(scripted):
    server = scripted(RATE_LIMITED, Reply(201, envelope(AGENT)))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        assert client.agents.create(name="Reviewer").id == "a1"
    assert [r.method for r in server.requests] == ["POST", "POST"]
    assert server.requests[0].body == server.requests[1].body


def test_a_429_before_a_stream_starts_is_retried(scripted):
    sse = (
        b'event: message\ndata: {"type": "message", "answer": "hi", "reference": []}\n\n'
        b'event: done\ndata: {"type": "done", "session_id": "s1", "message_id": "m1"}\n\n'
    )
    server = scripted(RATE_LIMITED, Reply(200, sse, headers={"Content-Type": "text/event-stream"}))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        with client.completions.create(agent_id="a1", question="hi", stream=True) as stream:
            assert stream.text() == "hi"
    assert len(server.requests) == 2


def test_when_retries_run_out_the_429_is_a_rate_limit_error_with_retry_after(scripted):
    server = scripted(RATE_LIMITED)
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            client.agents.retrieve("a1")
    assert caught.value.retry_after == 1.0 and caught.value.code == 10090
    assert caught.value.request_id == "req_429"
    assert len(server.requests) == 1


def test_a_retry_after_too_long_to_wait_goes_to_the_caller(scripted):
    server = scripted(Reply(429, envelope(code=10090, message="slow down"), headers={"Retry-After": "3600"}))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        with pytest.raises(RateLimitError) as caught:
            client.agents.retrieve("a1")
    assert caught.value.retry_after == 3600 and len(server.requests) == 1


def test_a_post_answered_503_is_not_retried(scripted):
    server = scripted(UNAVAILABLE, Reply(201, envelope(AGENT)))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        with pytest.raises(ServerError) as caught:
            client.agents.create(name="Reviewer")
    assert caught.value.code == 20002 and caught.value.status == 503
    assert caught.value.request_id == "req_503"
    assert len(server.requests) == 1


def test_a_completion_answered_503_is_not_retried(scripted):
    server = scripted(UNAVAILABLE)
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        with pytest.raises(ServerError):
            client.completions.create(agent_id="a1", question="hi")
        with pytest.raises(ServerError):
            client.completions.create(agent_id="a1", question="hi", stream=True)
    assert len(server.requests) == 2  # one each, no retry


def test_a_get_answered_503_is_retried_with_backoff_until_max_retries(scripted):
    server = scripted(UNAVAILABLE, UNAVAILABLE, Reply(200, envelope(AGENT)))
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=2) as client:
        assert client.agents.retrieve("a1").id == "a1"
    assert len(server.requests) == 3

    server = scripted(UNAVAILABLE)
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=1) as client:
        with pytest.raises(ServerError):
            client.agents.retrieve("a1")
    assert len(server.requests) == 2


def test_a_delete_answered_502_is_retried(scripted):
    server = scripted(Reply(502, b"bad gateway"), Reply(204, b""))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        assert client.agents.delete("a1") is None
    assert [r.method for r in server.requests] == ["DELETE", "DELETE"]


def test_a_dropped_connection_is_retried_for_a_get_but_not_a_post(scripted):
    server = scripted(Reply(drop=True), Reply(200, envelope(AGENT)))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        assert client.agents.retrieve("a1").id == "a1"
    assert len(server.requests) == 2

    server = scripted(Reply(drop=True), Reply(201, envelope(AGENT)))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        with pytest.raises(APIConnectionError):
            client.agents.create(name="Reviewer")
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_raised(monkeypatch):
    port = free_port()  # nothing listens there
    slept = []
    monkeypatch.setattr("combo_sdk._client.time.sleep", slept.append)
    with ComboAgent(api_key="ragflow-test", base_url=f"http://127.0.0.1:{port}", max_retries=2) as client:
        with pytest.raises(APIConnectionError):
            client.agents.create(name="Reviewer")  # a POST too: it never left
    assert len(slept) == 2
    assert 0.25 <= slept[0] <= 0.5 and 0.5 <= slept[1] <= 1.0  # exponential, with jitter


def test_a_stream_that_started_is_never_retried(scripted):
    # The server answers 200 with one event, then hangs up mid-stream.
    partial = b'event: message\ndata: {"type": "message", "answer": "par'
    server = scripted(Reply(200, partial, headers={"Content-Type": "text/event-stream", "Content-Length": "999"}))
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        stream = client.completions.create(agent_id="a1", question="hi", stream=True)
        with pytest.raises(APIConnectionError, match="broke off"):
            stream.final()
        assert stream.closed
    assert len(server.requests) == 1


async def test_the_async_client_retries_a_429_after_retry_after(scripted):
    server = scripted(RATE_LIMITED, Reply(200, envelope(AGENT)))
    async with AsyncComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        started = time.monotonic()
        agent = await client.agents.retrieve("a1")
        elapsed = time.monotonic() - started
    assert agent.id == "a1" and len(server.requests) == 2 and elapsed >= 0.95


async def test_the_async_client_does_not_retry_a_post_503(scripted):
    server = scripted(UNAVAILABLE)
    async with AsyncComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        with pytest.raises(ServerError):
            await client.completions.create(agent_id="a1", question="hi")
    assert len(server.requests) == 1


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    date = "Wed, 21 Oct 2015 07:28:30 GMT"
    assert parse_retry_after(date, now=1445412480.0) == 30.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=8.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (8, 8.0)]:
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_the_policy_table():
    policy = RetryPolicy(max_retries=2)
    headers = {}
    assert policy.delay_for_status("POST", 429, headers, 0) is not None
    assert policy.delay_for_status("POST", 503, headers, 0) is None
    assert policy.delay_for_status("PATCH", 502, headers, 0) is None
    assert policy.delay_for_status("GET", 504, headers, 0) is not None
    assert policy.delay_for_status("DELETE", 503, headers, 1) is not None
    assert policy.delay_for_status("GET", 503, headers, 2) is None  # retries used up
    assert policy.delay_for_status("GET", 500, headers, 0) is None
    assert policy.delay_for_status("GET", 404, headers, 0) is None
