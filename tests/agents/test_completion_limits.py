"""The completions family's budget on the completion path itself (both modes)."""

from __future__ import annotations

import time_machine
from django.test import override_settings

from agents.models import Message
from tests.agents.test_agents_api import make_agent


def ask(api, actor, agent_id, stream=False):
    return api.post(f"/v1/combo/agents/{agent_id}/completions", {"question": "hi", "stream": stream},
                    auth=actor.key_auth)


@time_machine.travel("2026-11-27 10:00:05", tick=False)
def test_the_61st_completion_in_a_minute_is_refused_while_other_calls_pass(api, alice):
    agent = make_agent(api, alice)["id"]
    for i in range(60):
        status, body, response = ask(api, alice, agent)
        assert status == 200, body
    assert response["X-RateLimit-Limit"] == "60" and response["X-RateLimit-Remaining"] == "0"
    stored = Message.objects.count()
    status, body, response = ask(api, alice, agent, stream=True)
    assert (status, body["code"]) == (429, 10090)
    assert body["data"]["family"] == "completions" and body["data"]["limit"] == 60
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Message.objects.count() == stored  # a refused question writes nothing
    status, _, response = api.get("/v1/combo/agents", auth=alice.key_auth)
    assert status == 200 and response["X-RateLimit-Limit"] == "300"


@override_settings(RATE_LIMITS={"completions": 2, "uploads": 10, "default": 300, "login": 10, "webhook": 300})
def test_a_stream_counts_once_and_auth_failures_count_nothing(api, alice):
    agent = make_agent(api, alice)["id"]
    for _ in range(3):
        status, _body, _ = api.post(f"/v1/combo/agents/{agent}/completions", {"question": "hi"},
                                   HTTP_AUTHORIZATION="Bearer ragflow-wrong")
        assert status == 401
    status, _, response = ask(api, alice, agent, stream=True)
    assert status == 200 and response["X-RateLimit-Remaining"] == "1"
    assert response.streamed.rstrip().endswith(b"}") and b"event: done" in response.streamed
    status, _, response = ask(api, alice, agent)
    assert status == 200 and response["X-RateLimit-Remaining"] == "0"
    assert ask(api, alice, agent)[0] == 429


@override_settings(RATE_LIMITS={"completions": 5, "uploads": 10, "default": 300, "login": 10, "webhook": 300})
def test_a_question_refused_after_it_was_counted_still_says_what_is_left(api, alice):
    agent = make_agent(api, alice)["id"]
    url = f"/v1/combo/agents/{agent}/completions"
    refused = [
        api.post(url, {"question": ""}, auth=alice.key_auth),  # validation
        api.post(url, {"question": "hi", "session_id": "00000000-0000-4000-8000-000000000000"},
                 auth=alice.key_auth),  # no such session
        api.post("/v1/combo/agents/00000000-0000-4000-8000-000000000000/completions", {"question": "hi"},
                 auth=alice.key_auth),  # no such agent
    ]
    assert [(status, body["code"]) for status, body, _ in refused] == [(400, 10001), (404, 10040), (404, 10040)]
    assert [response["X-RateLimit-Remaining"] for _, _, response in refused] == ["4", "3", "2"]
    assert all(response["X-RateLimit-Limit"] == "5" for _, _, response in refused)
    status, _, response = ask(api, alice, agent)
    assert status == 200 and response["X-RateLimit-Remaining"] == "1"
