"""An answer whose final write meets the database away a moment (a restart, a failover) is still saved.

The text was generated, and the client may already have all of it: the
write is tried again until the database is back, rather than leaving the
answer `in_progress` for the reaper to mark as interrupted, with no text.
"""

from __future__ import annotations

import pytest
from django.db.utils import OperationalError

from agents import completions
from agents.models import Message
from tests.agents.test_agents_api import make_agent


@pytest.fixture
def database_away_for_the_first_write(monkeypatch):
    real = completions._finish_batch
    calls = []

    async def away_once(outcome):
        calls.append(outcome)
        if len(calls) == 1:
            raise OperationalError("consuming input failed: server closed the connection unexpectedly")
        return await real(outcome)

    monkeypatch.setattr(completions, "_finish_batch", away_once)
    return calls


def test_an_answer_is_saved_when_its_first_write_finds_the_database_away(api, alice, database_away_for_the_first_write):
    agent = make_agent(api, alice)["id"]
    status, body, _ = api.post(f"/v1/combo/agents/{agent}/completions", {"question": "hi"}, auth=alice.key_auth)
    assert status == 200
    answer = Message.objects.get(role=Message.Role.ASSISTANT)
    assert len(database_away_for_the_first_write) == 2
    assert (answer.status, answer.content) == (Message.Status.COMPLETE, body["data"]["answer"])
