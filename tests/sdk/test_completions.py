"""Completions, non-streamed and streamed, against the live server."""

import time

import httpx
import pytest

from combo_sdk import (
    ComboAgent,
    Completion,
    DoneEvent,
    MessageEvent,
    Stream,
    StreamIncompleteError,
    UpstreamError,
)
from tests.sdk.conftest import NO_MODEL_NOTICE

QUESTION = "What does this change break?"


def wait_for_assistant_message(client, session_id, timeout=15.0):
    """The session's last assistant message once it is no longer in progress."""
    deadline = time.monotonic() + timeout
    while True:
        messages = list(client.sessions.list_messages(session_id))
        answers = [m for m in messages if m.role == "assistant"]
        if answers and answers[-1].status != "in_progress":
            return answers[-1]
        assert time.monotonic() < deadline, f"the answer is still in progress: {messages}"
        time.sleep(0.1)


class RequestLog:
    """A real httpx client that notes each request it sends (method and path)."""

    def __init__(self):
        self.sent = []
        self.http = httpx.Client(event_hooks={"request": [self._note]})

    def _note(self, request):
        self.sent.append((request.method, request.url.path))


def test_a_non_streamed_answer_is_a_typed_completion(client, agent):
    session = client.sessions.create(agent_id=agent.id)
    response = client.completions.create(session_id=session.id, question=QUESTION)
    assert isinstance(response, Completion)
    assert response.answer.startswith(NO_MODEL_NOTICE)
    assert response.session_id == session.id
    assert response.message_id
    assert response.reference == []
    assert response.usage.completion_tokens == len(response.answer.split())
    assert response.finish_reason == "stop"


def test_agent_id_alone_starts_a_session(client, agent):
    response = client.completions.create(agent_id=agent.id, question=QUESTION)
    assert response.session_id
    session = client.sessions.retrieve(response.session_id)
    assert session.agent_id == agent.id
    assert [m.content for m in session.messages] == [QUESTION, response.answer]


def test_a_session_id_alone_finds_the_agent_once_then_uses_the_cache(live, api_key, client, agent):
    session = client.sessions.create(agent_id=agent.id)
    log = RequestLog()
    with ComboAgent(api_key=api_key, base_url=live.base_url, http_client=log.http) as fresh:
        fresh.completions.create(session_id=session.id, question="first")
        fresh.completions.create(session_id=session.id, question="second")
        with fresh.completions.create(session_id=session.id, question="third", stream=True) as stream:
            stream.text()
    completions = f"/v1/combo/agents/{agent.id}/completions"
    assert log.sent == [
        ("GET", f"/v1/combo/sessions/{session.id}"),
        ("POST", completions),
        ("POST", completions),
        ("POST", completions),
    ]
    log.http.close()


def test_a_stream_yields_typed_events_whose_deltas_join_to_the_non_streamed_answer(client, agent):
    plain = client.completions.create(agent_id=agent.id, question=QUESTION)

    session = client.sessions.create(agent_id=agent.id)
    stream = client.completions.create(session_id=session.id, question=QUESTION, stream=True)
    assert isinstance(stream, Stream)
    events = list(stream)

    messages = [e for e in events if isinstance(e, MessageEvent)]
    assert len(messages) >= 1 and all(e.type == "message" for e in messages)
    assert "".join(e.answer for e in messages) == plain.answer
    assert messages[-1].reference == []
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.type == "done"
    assert done.session_id == session.id and done.message_id
    assert done.usage.completion_tokens == plain.usage.completion_tokens
    assert done.finish_reason == plain.finish_reason == "stop"
    assert stream.closed and stream.response.is_closed

    # final() after the loop still knows the whole answer.
    final = stream.final()
    assert final.answer == plain.answer and final.message_id == done.message_id and final.finish_reason == "stop"
    stored = wait_for_assistant_message(client, session.id)
    assert stored.id == done.message_id and stored.content == plain.answer and stored.status == "complete"
    assert stored.finish_reason == "stop"


def test_text_and_final_accumulate_the_whole_answer(client, agent):
    plain = client.completions.create(agent_id=agent.id, question=QUESTION)
    with client.completions.create(agent_id=agent.id, question=QUESTION, stream=True) as stream:
        assert stream.text() == plain.answer
    with client.completions.create(agent_id=agent.id, question=QUESTION, stream=True) as stream:
        final = stream.final()
    assert isinstance(final, Completion)
    assert final.answer == plain.answer and final.session_id and final.message_id
    assert final.session_id != plain.session_id


def test_breaking_out_early_closes_the_response_and_the_server_still_stores_the_answer(client, agent):
    plain = client.completions.create(agent_id=agent.id, question=QUESTION)
    session = client.sessions.create(agent_id=agent.id)

    stream = client.completions.create(session_id=session.id, question=QUESTION, stream=True)
    for event in stream:
        first = event
        break
    assert isinstance(first, MessageEvent)
    assert stream.closed and stream.response.is_closed
    with pytest.raises(StreamIncompleteError):
        stream.final()

    stored = wait_for_assistant_message(client, session.id)
    assert stored.status == "complete"
    assert stored.content == plain.answer


def test_leaving_the_with_block_closes_the_stream(client, agent):
    with client.completions.create(agent_id=agent.id, question=QUESTION, stream=True) as stream:
        first = next(iter(stream))
        assert isinstance(first, MessageEvent)
    assert stream.closed and stream.response.is_closed


def test_an_upstream_failure_is_an_upstream_error(client, make_agent, failing_llm):
    broken = make_agent(name="Broken model", llm={"provider": "openai", "model": "broken"})
    with pytest.raises(UpstreamError) as caught:
        client.completions.create(agent_id=broken.id, question=QUESTION)
    error = caught.value
    assert 30000 < error.code < 40000 and error.status in (502, 503, 504)
    assert error.request_id and error.request_id.startswith("req_")
    assert any(r.path.endswith("/chat/completions") for r in failing_llm.requests)


def test_an_upstream_failure_mid_stream_is_an_error_event(client, make_agent):
    broken = make_agent(name="Broken model", llm={"provider": "openai", "model": "broken"})
    with client.completions.create(agent_id=broken.id, question=QUESTION, stream=True) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "done"]
    error = events[-2]
    assert 30000 < error.code < 40000 and error.message and error.request_id
    with pytest.raises(UpstreamError) as caught:
        stream.final()
    assert caught.value.code == error.code and caught.value.request_id == error.request_id
