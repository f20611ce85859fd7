"""AsyncComboAgent: the same flows as the sync client, against the live server."""

import asyncio

import pytest

from combo_sdk import (
    AsyncComboAgent,
    AsyncCursor,
    AsyncStream,
    AuthenticationError,
    Completion,
    DoneEvent,
    MessageEvent,
    NotFoundError,
    PermissionDeniedError,
    StreamIncompleteError,
    UpstreamError,
    ValidationError,
)
from tests.sdk.conftest import BUILTIN, NO_MODEL_NOTICE, askip_if_route_missing

QUESTION = "Review this PR for me"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def test_the_quick_sample_async(live, agent):
    client = AsyncComboAgent(api_key=live.api_key, base_url=live.base_url)
    session = await client.sessions.create(agent_id=agent.id)
    response = await client.completions.create(session_id=session.id, question=QUESTION, stream=False)
    assert response.answer.startswith(NO_MODEL_NOTICE)
    await client.aclose()


async def test_agents_crud_and_paging(aclient):
    made = [await aclient.agents.create(name=f"async agent {i}", llm=BUILTIN) for i in range(3)]
    try:
        cursor = aclient.agents.list(limit=2)
        assert isinstance(cursor, AsyncCursor)
        seen = [agent.id async for agent in cursor]
        assert {a.id for a in made} <= set(seen) and len(seen) == len(set(seen))
        pages = [page async for page in aclient.agents.list(limit=2).pages()]
        assert len(pages) >= 2

        updated = await aclient.agents.update(made[0].id, description="async")
        assert updated.description == "async"
        assert (await aclient.agents.retrieve(made[0].id)).description == "async"
    finally:
        for agent in made:
            await aclient.agents.delete(agent.id)
    with pytest.raises(NotFoundError):
        await aclient.agents.retrieve(made[0].id)


async def test_sessions_and_messages(aclient, agent):
    session = await aclient.sessions.create(agent_id=agent.id, title="async")
    assert [s.id async for s in aclient.sessions.list(agent_id=agent.id)] == [session.id]
    await aclient.completions.create(session_id=session.id, question="one")
    detail = await aclient.sessions.retrieve(session.id)
    assert detail.agent_id == agent.id and [m.role for m in detail.messages] == ["user", "assistant"]
    assert len(await aclient.sessions.list_messages(session.id, limit=1).to_list()) == 2
    await aclient.sessions.delete(session.id)
    with pytest.raises(NotFoundError):
        await aclient.sessions.retrieve(session.id)


async def test_a_stream_is_an_async_iterator_of_typed_events(aclient, agent):
    plain = await aclient.completions.create(agent_id=agent.id, question=QUESTION)
    assert isinstance(plain, Completion)

    stream = await aclient.completions.create(agent_id=agent.id, question=QUESTION, stream=True)
    assert isinstance(stream, AsyncStream)
    events = [event async for event in stream]
    assert all(isinstance(e, MessageEvent) for e in events[:-1]) and isinstance(events[-1], DoneEvent)
    assert "".join(e.answer for e in events[:-1]) == plain.answer
    assert stream.closed and stream.response.is_closed

    async with await aclient.completions.create(agent_id=agent.id, question=QUESTION, stream=True) as stream:
        assert await stream.text() == plain.answer
    final = await (await aclient.completions.create(agent_id=agent.id, question=QUESTION, stream=True)).final()
    assert final.answer == plain.answer and final.message_id


async def test_breaking_out_of_an_async_stream_closes_it(aclient, agent):
    plain = await aclient.completions.create(agent_id=agent.id, question=QUESTION)
    session = await aclient.sessions.create(agent_id=agent.id)
    stream = await aclient.completions.create(session_id=session.id, question=QUESTION, stream=True)
    async for event in stream:
        assert isinstance(event, MessageEvent)
        break
    # The dropped async generator is finalised by the event loop.
    for _ in range(50):
        if stream.response.is_closed:
            break
        await asyncio.sleep(0.01)
    assert stream.closed and stream.response.is_closed
    with pytest.raises(StreamIncompleteError):
        await stream.final()

    # With `async with` the response is closed on leaving the block.
    async with await aclient.completions.create(agent_id=agent.id, question=QUESTION, stream=True) as second:
        async for _ in second:
            break
    assert second.response.is_closed

    for _ in range(150):
        detail = await aclient.sessions.retrieve(session.id)
        answers = [m for m in detail.messages if m.role == "assistant"]
        if answers and answers[-1].status != "in_progress":
            break
        await asyncio.sleep(0.1)
    assert answers[-1].status == "complete" and answers[-1].content == plain.answer


async def test_errors_are_the_same_classes(live, aclient, agent, make_agent):
    async with AsyncComboAgent(api_key="ragflow-" + "x" * 40, base_url=live.base_url) as stranger:
        with pytest.raises(AuthenticationError) as caught:
            await stranger.agents.retrieve(agent.id)
        assert caught.value.code == 10011 and caught.value.request_id
    with pytest.raises(PermissionDeniedError):
        await aclient.api_keys.create(name="nope")
    with pytest.raises(NotFoundError):
        await aclient.completions.create(agent_id=UNKNOWN_ID, question="hi")
    with pytest.raises(ValidationError) as caught:
        await aclient.completions.create(agent_id=agent.id, question="")
    assert "question" in caught.value.errors

    broken = make_agent(name="Broken model", llm={"provider": "openai"})
    with pytest.raises(UpstreamError):
        await aclient.completions.create(agent_id=broken.id, question="hi")
    async with await aclient.completions.create(agent_id=broken.id, question="hi", stream=True) as stream:
        kinds = [event.type async for event in stream]
    assert kinds[-2:] == ["error", "done"]
    with pytest.raises(UpstreamError):
        await stream.final()


async def test_a_session_id_alone_is_enough(live, api_key, agent):
    async with AsyncComboAgent(api_key=api_key, base_url=live.base_url) as first:
        session = await first.sessions.create(agent_id=agent.id)
    async with AsyncComboAgent(api_key=api_key, base_url=live.base_url) as fresh:
        response = await fresh.completions.create(session_id=session.id, question=QUESTION)
        assert response.session_id == session.id
        assert fresh._session_agents == {session.id: agent.id}


async def test_api_keys_with_a_jwt(live):
    async with AsyncComboAgent(base_url=live.base_url, api_key=None) as anonymous:
        token = await anonymous.auth.token(username=live.username, password=live.password)
    async with AsyncComboAgent(api_key=token.access, base_url=live.base_url) as signed_in:
        created = await signed_in.api_keys.create(name="async key")
        assert created.key.startswith("ragflow-")
        assert created.id in {k.id async for k in signed_in.api_keys.list()}
        assert (await signed_in.api_keys.delete(created.id)).status == "revoked"


async def test_files_when_the_server_has_them(aclient):
    await askip_if_route_missing(lambda: aclient.files.list(limit=1).to_list(), "files (issue 5)")
    uploaded = await aclient.files.upload(b"Async notes about deploys.\n", filename="async.txt")
    try:
        assert (await aclient.files.wait_until_ready(uploaded.id, timeout=60)).is_ready
        assert uploaded.id in {f.id async for f in aclient.files.list()}
    finally:
        await aclient.files.delete(uploaded.id)


async def test_webhooks_when_the_server_has_them(aclient, agent):
    await askip_if_route_missing(lambda: aclient.webhooks.list(limit=1).to_list(), "webhooks (issue 6)")
    hook = await aclient.webhooks.create(name="async hook", agent_id=agent.id)
    try:
        assert hook.secret and aclient.webhooks.verify(hook.secret, b"{}", aclient.webhooks.sign(hook.secret, b"{}"))
        rotated = await aclient.webhooks.rotate_secret(hook.id)
        assert rotated.secret != hook.secret
    finally:
        await aclient.webhooks.delete(hook.id)
