"""Completions through a live daphne and a real OpenAI-compatible upstream.

The server runs as `make run` does; the upstream is tests.fakes.openai_server,
a real HTTP server the real `openai` client talks to. SSE is read as bytes.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAIServer, answer_tokens
from tests.live import LiveCombo, read_sse


@pytest.fixture(scope="module")
def upstream():
    with FakeOpenAIServer(tokens=12, slow_interval=0.3) as server:
        yield server


@pytest.fixture(scope="module")
def live(upstream):
    combo = LiveCombo(
        env={
            "COMBO_LLM_BASE_URL": upstream.base_url,
            "COMBO_LLM_API_KEY": "sk-upstream-secret-123",
            "COMBO_LLM_MODEL": "fake",
            "COMBO_LLM_TIMEOUT": "2",
            "COMBO_SSE_HEARTBEAT_SECONDS": "0.2",
            "COMBO_MAX_ANSWER_CHARS": "2000",
        }
    )
    combo.migrate()
    combo.alice_key = combo.create_key("alice")
    combo.bob_key = combo.create_key("bob")
    combo.url = combo.start()
    yield combo
    combo.stop()


def client(live, key=None) -> httpx.Client:
    return httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {key or live.alice_key}"}, timeout=20
    )


def new_agent(live, **fields) -> str:
    with client(live) as http:
        response = http.post("/v1/combo/agents", json={"name": "A", "instructions": "Be brief.", **fields})
        assert response.status_code == 201, response.text
        return response.json()["data"]["id"]


def ask(live, agent_id, question, **extra):
    with client(live) as http:
        return http.post(f"/v1/combo/agents/{agent_id}/completions", json={"question": question, **extra})


def stream(live, agent_id, question, **extra):
    with client(live) as http:
        with http.stream("POST", f"/v1/combo/agents/{agent_id}/completions",
                         json={"question": question, "stream": True, **extra}) as response:
            return response, read_sse(response)


def session_messages(live, session_id) -> list[dict]:
    with client(live) as http:
        return http.get(f"/v1/combo/sessions/{session_id}").json()["data"]["messages"]["items"]


def test_both_modes_give_the_same_text_from_the_builtin_provider(live):
    agent = new_agent(live, llm={"provider": "builtin"})
    plain = ask(live, agent, "What is Combo?")
    assert plain.status_code == 200 and plain.headers["x-request-id"]
    answer = plain.json()["data"]["answer"]
    assert answer.startswith("No language model is configured")
    response, events = stream(live, agent, "What is Combo?")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    assert plain.headers["cache-control"] == "no-store"  # as every other /v1 answer
    messages = [data for kind, data in events if kind == "message"]
    assert len(messages) > 1, "the answer should arrive in pieces"
    assert all(m["type"] == "message" for m in messages)
    assert "".join(m["answer"] for m in messages) == answer
    kind, done = [e for e in events if e[0] != "comment"][-1]
    assert kind == "done" and done["type"] == "done" and done["session_id"] and done["message_id"]
    # The headers Django's security middleware puts on every other response, in both modes.
    health = httpx.get(f"{live.url}/v1/health")
    for name in ("x-content-type-options", "referrer-policy", "x-frame-options", "cross-origin-opener-policy"):
        assert plain.headers[name] == response.headers[name] == health.headers[name], name


def test_a_stream_without_session_creates_one_and_stores_both_turns(live):
    agent = new_agent(live)
    _, events = stream(live, agent, "hello there")
    done = [data for kind, data in events if kind == "done"][0]
    text = "".join(data["answer"] for kind, data in events if kind == "message")
    assert text == "".join(answer_tokens("hello there", 12))
    stored = session_messages(live, done["session_id"])
    assert [(m["role"], m["content"], m["status"]) for m in stored] == [
        ("user", "hello there", "complete"),
        ("assistant", text, "complete"),
    ]
    assert stored[1]["id"] == done["message_id"]


def test_usage_a_provider_reports_that_is_no_count_does_not_cost_the_answer(live):
    # fake-oddusage reports prompt_tokens as a string and completion_tokens beyond 64 bits.
    agent = new_agent(live, llm={"model": "fake-oddusage"})
    _, events = stream(live, agent, "odd counts")
    done = [data for kind, data in events if kind == "done"][0]
    assert "usage" not in done  # no count it could pass on
    stored = session_messages(live, done["session_id"])
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1]["content"] == "".join(answer_tokens("odd counts", 12))
    assert (stored[1]["prompt_tokens"], stored[1]["completion_tokens"]) == (None, None)


@pytest.mark.parametrize("streamed", [True, False])
def test_text_no_database_can_store_is_cleaned_before_it_is_shown_or_saved(live, streamed):
    # fake-oddtext's second token ends in a NUL and a lone surrogate.
    agent = new_agent(live, llm={"model": "fake-oddtext"})
    tokens = answer_tokens("odd text", 12)
    expected = tokens[0] + tokens[1] + "\ufffd" + "".join(tokens[2:])
    if streamed:
        _, events = stream(live, agent, "odd text")
        assert [kind for kind, _ in events if kind not in ("comment", "message")] == ["done"]
        text = "".join(data["answer"] for kind, data in events if kind == "message")
        session_id = [data for kind, data in events if kind == "done"][0]["session_id"]
    else:
        response = ask(live, agent, "odd text")
        assert response.status_code == 200, response.text
        text, session_id = response.json()["data"]["answer"], response.json()["data"]["session_id"]
    assert text == expected
    stored = session_messages(live, session_id)
    assert [(m["role"], m["status"], m["content"]) for m in stored] == [
        ("user", "complete", "odd text"), ("assistant", "complete", expected),
    ]


@pytest.mark.parametrize("streamed", [True, False])
def test_an_answer_that_runs_past_the_longest_kept_is_stopped_there(live, streamed):
    # Ten 300-character words: the fake's 12-token echo is about 3,000 characters; 2,000 are kept.
    question = " ".join(f"{i}" + "w" * 299 for i in range(10))
    full = "".join(answer_tokens(question, 12))
    agent = new_agent(live)
    if streamed:
        _, events = stream(live, agent, question)
        assert [kind for kind, _ in events if kind not in ("comment", "message")] == ["error", "done"]
        # The caller saw exactly what is kept.
        assert "".join(data["answer"] for kind, data in events if kind == "message") == full[:2000]
        error = [data for kind, data in events if kind == "error"][0]
        session_id = [data for kind, data in events if kind == "done"][0]["session_id"]
    else:
        response = ask(live, agent, question)
        assert response.status_code == 502
        error, session_id = response.json(), response.headers["x-combo-session-id"]
    assert error["code"] == 30006 and "2,000 characters" in error["message"]
    stored = session_messages(live, session_id)
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "failed")]
    assert stored[1]["content"] == full[:2000] and stored[1]["error"]["code"] == 30006


def test_history_goes_into_the_prompt(live, upstream):
    agent = new_agent(live)
    first = ask(live, agent, "first question").json()["data"]
    ask(live, agent, "second question", session_id=first["session_id"])
    sent = upstream.requests[-1].messages
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1:] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": first["answer"]},
        {"role": "user", "content": "second question"},
    ]
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-upstream-secret-123"


@pytest.mark.parametrize(
    "model, status, code",
    [
        ("fake-500", 502, 30001),
        ("fake-429", 503, 30003),
        ("fake-401", 502, 30005),
        ("fake-hang", 504, 30002),
        ("fake-cut", 502, 30006),
        ("fake-garbage", 502, 30006),
        ("fake-truncated", 502, 30006),
    ],
)
def test_upstream_faults_map_to_their_codes_and_are_recorded(live, model, status, code):
    agent = new_agent(live, llm={"model": model})
    response = ask(live, agent, "will this fail?")
    body = response.json()
    assert (response.status_code, body["code"]) == (status, code), body
    assert body["data"]["request_id"] == response.headers["x-request-id"]
    assert "sk-upstream-secret-123" not in response.text and "Traceback" not in response.text
    stored = session_messages(live, response.headers["x-combo-session-id"])
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "failed")]
    assert stored[1]["error"]["code"] == code


def test_a_provider_that_asks_to_wait_is_passed_on_as_retry_after(live):
    # The fake upstream answers fake-429 with Retry-After: 1.
    agent = new_agent(live, llm={"model": "fake-429"})
    response = ask(live, agent, "busy?")
    assert (response.status_code, response.json()["code"]) == (503, 30003)
    assert response.headers["retry-after"] == "1"
    assert response.json()["data"]["retry_after"] == 1
    _, events = stream(live, agent, "busy?")
    error = [data for kind, data in events if kind == "error"][0]
    assert (error["code"], error["data"]["retry_after"]) == (30003, 1)


def test_a_failure_mid_stream_is_an_error_event_then_done(live):
    agent = new_agent(live, llm={"model": "fake-cut"})
    response, events = stream(live, agent, "cut me off")
    assert response.status_code == 200
    kinds = [kind for kind, _ in events if kind != "comment"]
    assert kinds[-2:] == ["error", "done"]
    error = [data for kind, data in events if kind == "error"][0]
    assert error["code"] == 30006 and error["data"]["request_id"] == response.headers["x-request-id"]
    assert "sk-upstream-secret-123" not in str(events)
    done = [data for kind, data in events if kind == "done"][0]
    stored = session_messages(live, done["session_id"])
    assert stored[-1]["status"] == "failed" and stored[-1]["error"]["code"] == 30006


def test_it_sends_heartbeats_while_the_model_is_slow(live):
    agent = new_agent(live, llm={"model": "fake-slow"})
    _, events = stream(live, agent, "take your time")
    assert ("comment", "keep-alive") in events
    assert "".join(d["answer"] for k, d in events if k == "message") == "".join(answer_tokens("take your time", 12))


def test_a_client_that_leaves_mid_stream_still_gets_its_answer_saved(live):
    agent = new_agent(live, llm={"model": "fake-slow"})
    host, port = live.url.removeprefix("http://").split(":")
    body = b'{"question": "leave early", "stream": true}'
    request = (
        f"POST /v1/combo/agents/{agent}/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {live.alice_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"event: message" not in received:
            received += sock.recv(4096)
    # The client is gone after the first event; 12 tokens 0.3 s apart take ~3.6 s more.
    with client(live) as http:
        sessions = http.get(f"/v1/combo/agents/{agent}/sessions").json()["data"]["items"]
    assert len(sessions) == 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        stored = session_messages(live, sessions[0]["id"])
        if stored[-1]["status"] != "in_progress":
            break
        time.sleep(0.3)
    assert stored[-1]["status"] == "complete"
    assert stored[-1]["content"] == "".join(answer_tokens("leave early", 12))


def test_errors_before_streaming_are_plain_envelopes(live):
    agent = new_agent(live)
    with httpx.Client(base_url=live.url, timeout=10) as http:
        response = http.post(f"/v1/combo/agents/{agent}/completions", json={"question": "x", "stream": True})
        assert (response.status_code, response.json()["code"]) == (401, 10010)
        assert response.headers["content-type"] == "application/json"
    with client(live, live.bob_key) as http:
        response = http.post(f"/v1/combo/agents/{agent}/completions", json={"question": "x", "stream": True})
        assert (response.status_code, response.json()["code"]) == (404, 10040)
    with client(live) as http:
        response = http.post(f"/v1/combo/agents/{agent}/completions", json={"question": "", "stream": True})
        assert (response.status_code, response.json()["code"]) == (400, 10001)
        response = http.get(f"/v1/combo/agents/{agent}/completions")
        assert (response.status_code, response.json()["code"]) == (405, 10050)
        response = http.post(f"/v1/combo/agents/{agent}/completions", json={"question": "x"},
                             headers={"Accept": "text/html"})
        assert (response.status_code, response.json()["code"]) == (406, 10051)
        for accept in ("text/html, */*;q=0.1", "application/*", "text/event-stream", "application/json; charset=utf-8"):
            response = http.post(f"/v1/combo/agents/{agent}/completions", json={"question": "x"},
                                 headers={"Accept": accept})
            assert response.status_code == 200, accept
        response = http.post(f"/v1/combo/agents/{agent}/completions", content=b"x" * (1024 * 1024 + 1),
                             headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()["code"]) == (413, 10070)


@pytest.mark.parametrize(
    "model, says",
    [
        ("fake-toolong", ["ask a shorter question or start a new session", "COMBO_PROMPT_HISTORY_CHARS"]),
        ("fake-404", ["serves the model 'fake-404'", "COMBO_LLM_MODEL"]),
    ],
)
def test_a_refused_request_says_what_to_do_alike_in_both_modes_and_in_the_session(live, model, says):
    agent = new_agent(live, llm={"model": model})
    plain = ask(live, agent, "refuse me")
    assert (plain.status_code, plain.json()["code"]) == (502, 30001)
    _, events = stream(live, agent, "refuse me")
    assert [kind for kind, _ in events if kind != "comment"] == ["error", "done"]
    error = [data for kind, data in events if kind == "error"][0]
    assert error["message"] == plain.json()["message"]
    assert all(phrase in error["message"] for phrase in says), error["message"]
    assert "sk-upstream-secret-123" not in error["message"]
    for session_id in (plain.headers["x-combo-session-id"], events[-1][1]["session_id"]):
        stored = session_messages(live, session_id)[-1]
        assert (stored["status"], stored["error"]) == ("failed", {"code": 30001, "message": error["message"]})


@pytest.mark.parametrize("streamed", [True, False])
def test_an_answer_cut_by_max_tokens_says_so_in_both_modes_and_in_the_session(live, streamed):
    agent = new_agent(live, llm={"model": "fake", "max_tokens": 3})
    if streamed:
        _, events = stream(live, agent, "cut me short")
        assert [kind for kind, _ in events if kind not in ("comment", "message")] == ["done"]
        answer = "".join(data["answer"] for kind, data in events if kind == "message")
        result = events[-1][1]
    else:
        response = ask(live, agent, "cut me short")
        assert response.status_code == 200
        result = response.json()["data"]
        answer = result["answer"]
    assert answer == "".join(answer_tokens("cut me short", 3))
    assert result["finish_reason"] == "length"
    stored = session_messages(live, result["session_id"])[-1]
    assert (stored["status"], stored["content"], stored["finish_reason"]) == ("complete", answer, "length")
    # A whole answer says "stop"; a provider that reports no token counts leaves usage out.
    whole = ask(live, new_agent(live), "all of it").json()["data"]
    assert whole["finish_reason"] == "stop"
    bare = ask(live, new_agent(live, llm={"model": "fake-nousage"}), "no counts").json()["data"]
    assert (bare["finish_reason"], bare["usage"]) == ("stop", None)
    assert session_messages(live, whole["session_id"])[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize("streamed", [True, False])
def test_a_reasoning_models_thinking_is_left_out_and_thinking_alone_is_no_answer(live, upstream, streamed):
    whole, cut = new_agent(live, llm={"model": "fake-reasoning"}), new_agent(
        live, llm={"model": "fake-reasoning", "max_tokens": 2})
    if streamed:
        _, events = stream(live, whole, "think first")
        answer = "".join(data["answer"] for kind, data in events if kind == "message")
        session_id = events[-1][1]["session_id"]
        _, events = stream(live, cut, "think first")
        assert [kind for kind, _ in events if kind not in ("comment", "message")] == ["error", "done"]
        error = [data for kind, data in events if kind == "error"][0]
        cut_session = events[-1][1]["session_id"]
    else:
        response = ask(live, whole, "think first")
        answer, session_id = response.json()["data"]["answer"], response.json()["data"]["session_id"]
        response = ask(live, cut, "think first")
        assert response.status_code == 502
        error, cut_session = response.json(), response.headers["x-combo-session-id"]
    assert answer == "".join(answer_tokens("think first", 10))  # "Let me think." is not in it
    assert session_messages(live, session_id)[-1]["content"] == answer
    assert error["code"] == 30006 and "max tokens" in error["message"]
    stored = session_messages(live, cut_session)[-1]
    assert (stored["status"], stored["content"], stored["error"]["code"]) == ("failed", "", 30006)
