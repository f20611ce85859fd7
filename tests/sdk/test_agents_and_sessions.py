"""Agents and sessions through the SDK, against the live server."""

import pytest

from combo_sdk import Agent, ComboAgent, LLMConfig, NotFoundError, Session, SyncCursor


def test_it_creates_reads_updates_and_deletes_an_agent(client):
    created = client.agents.create(
        name="Reviewer",
        description="Reviews pull requests",
        instructions="Be brief.",
        opening_message="Hi! Paste a diff.",
        llm=LLMConfig(provider="builtin", temperature=0.2, max_tokens=256),
    )
    assert isinstance(created, Agent)
    assert created.id and created.name == "Reviewer"
    assert created.llm.provider == "builtin"
    assert created.llm.temperature == 0.2 and created.llm.max_tokens == 256

    read = client.agents.retrieve(created.id)
    assert read == created

    updated = client.agents.update(created.id, name="Senior reviewer", llm={"temperature": 0.7})
    assert updated.name == "Senior reviewer"
    assert updated.description == "Reviews pull requests"  # PATCH leaves the rest alone
    assert updated.llm.temperature == 0.7
    assert client.agents.retrieve(created.id).name == "Senior reviewer"

    assert client.agents.delete(created.id) is None
    with pytest.raises(NotFoundError):
        client.agents.retrieve(created.id)


def test_agent_list_is_an_iterator_that_follows_next_cursor(client, make_agent):
    names = {f"paged agent {i}" for i in range(5)}
    ids = {make_agent(name=name).id for name in names}

    agents = client.agents.list(limit=2)  # 2 per page: at least 3 pages
    assert isinstance(agents, SyncCursor)
    first = next(agents)
    rest = list(agents)
    seen = [first] + rest
    assert ids <= {a.id for a in seen}
    assert len({a.id for a in seen}) == len(seen), "no agent twice across pages"

    pages = list(client.agents.list(limit=2).pages())
    assert len(pages) >= 3
    assert all(page.next_cursor for page in pages[:-1]) and pages[-1].next_cursor is None


def test_objects_keep_fields_this_sdk_does_not_know(client, agent):
    read = client.agents.retrieve(agent.id)
    raw = read.to_dict()
    assert raw["id"] == agent.id and "created_at" in raw
    # A field only the raw answer has is still an attribute and an item.
    read._raw["added_by_a_newer_server"] = {"x": 1}
    assert read.added_by_a_newer_server == {"x": 1}
    assert read["added_by_a_newer_server"] == {"x": 1}
    assert not hasattr(read, "never_sent")


def test_sessions_create_list_retrieve_delete(client, agent):
    first = client.sessions.create(agent_id=agent.id, title="first")
    second = client.sessions.create(agent_id=agent.id)
    assert isinstance(first, Session)
    assert first.agent_id == agent.id and first.title == "first"

    listed = list(client.sessions.list(agent_id=agent.id, limit=1))
    assert {s.id for s in listed} == {first.id, second.id}

    detail = client.sessions.retrieve(first.id)
    assert detail.id == first.id and detail.agent_id == agent.id
    assert detail.messages == [] and detail.messages_next_cursor is None
    nested = client.sessions.retrieve(first.id, agent_id=agent.id)
    assert nested.id == first.id and nested.messages == []

    client.sessions.delete(first.id)  # the agent is found from the session id
    with pytest.raises(NotFoundError):
        client.sessions.retrieve(first.id)
    client.sessions.delete(second.id, agent_id=agent.id)
    assert list(client.sessions.list(agent_id=agent.id)) == []


def test_session_messages_page_through_the_history(client, agent):
    session = client.sessions.create(agent_id=agent.id)
    for question in ("one", "two", "three"):
        client.completions.create(session_id=session.id, question=question)

    first_page = client.sessions.retrieve(session.id, limit=2)
    assert len(first_page.messages) == 2 and first_page.messages_next_cursor
    second_page = client.sessions.retrieve(session.id, limit=2, cursor=first_page.messages_next_cursor)
    assert [m.content for m in second_page.messages][0] == "two"

    every = list(client.sessions.list_messages(session.id, limit=2))
    assert [m.role for m in every] == ["user", "assistant"] * 3
    assert [m.content for m in every if m.role == "user"] == ["one", "two", "three"]
    assert all(m.status for m in every)


def test_base_url_with_or_without_v1(live, api_key, agent):
    for base in (live.root, live.root + "/", live.base_url, live.base_url + "/"):
        with ComboAgent(api_key=api_key, base_url=base) as client:
            assert client.base_url == live.base_url
            assert client.agents.retrieve(agent.id).id == agent.id


def test_environment_variables_are_the_fallbacks(live, api_key, agent, monkeypatch):
    monkeypatch.setenv("COMBO_API_KEY", api_key)
    monkeypatch.setenv("COMBO_BASE_URL", live.root)
    with ComboAgent() as client:
        assert client.base_url == live.base_url
        assert client.agents.retrieve(agent.id).name == agent.name
    # Arguments win over the environment.
    with ComboAgent(api_key="ragflow-wrong", base_url=live.base_url) as client:
        assert client.api_key == "ragflow-wrong"

