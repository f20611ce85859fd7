"""ETags through the SDK: `.etag`, `update(if_match=)`, `delete(if_match=)`, `retrieve(if_none_match=)` and
`files.wait_until_ready()`'s conditional polling, against the live server.

The server side is combo/api/conditional.py (agents, webhooks, files); the
request shapes and the no-retry behaviour are also checked against a scripted
HTTP server.
"""

import time

import pytest

import combo_sdk
from combo_sdk import (
    Agent,
    ClientError,
    ComboAgent,
    File,
    NotFoundError,
    PreconditionFailedError,
    Webhook,
)
from combo_sdk.errors import error_class
from tests.sdk.conftest import Reply, envelope

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def is_strong_etag(value) -> bool:
    return isinstance(value, str) and value.startswith('"') and value.endswith('"') and len(value) > 2


# --- agents ----------------------------------------------------------------------------


def test_an_agent_read_or_updated_carries_its_etag_outside_its_data(client, make_agent):
    created = make_agent(name="Versioned")
    assert created.etag is None  # POST answers without an ETag

    read = client.agents.retrieve(created.id)
    assert is_strong_etag(read.etag)
    assert "etag" not in read.to_dict() and "etag" not in read and "etag" not in repr(read)
    assert read == created  # the version is not part of the object's data
    assert client.agents.retrieve(created.id).etag == read.etag

    updated = client.agents.update(created.id, name="Versioned again")
    assert is_strong_etag(updated.etag) and updated.etag != read.etag
    assert client.agents.retrieve(created.id).etag == updated.etag


def test_an_update_with_a_stale_if_match_raises_precondition_failed_and_changes_nothing(client, make_agent):
    agent = make_agent(name="Reviewer")
    read = client.agents.retrieve(agent.id)
    client.agents.update(agent.id, instructions="Changed meanwhile.")  # no if_match: as before

    with pytest.raises(PreconditionFailedError) as caught:
        client.agents.update(agent.id, if_match=read.etag, name="Renamed")
    error = caught.value
    assert isinstance(error, ClientError)
    assert (error.code, error.status) == (10061, 412)
    assert error.request_id and "If-Match" in error.message
    current = client.agents.retrieve(agent.id)
    assert (current.name, current.instructions) == ("Reviewer", "Changed meanwhile.")

    # Read again, the same change applies; its answer is the next version.
    renamed = client.agents.update(agent.id, if_match=current.etag, name="Renamed")
    assert renamed.name == "Renamed" and renamed.etag != current.etag
    again = client.agents.update(agent.id, if_match=renamed.etag, description="Chained")
    assert again.description == "Chained"
    assert client.agents.update(agent.id, if_match="*", name="Any version").name == "Any version"


def test_if_match_none_is_refused_before_anything_is_sent(client, make_agent):
    agent = make_agent(name="Untouched")
    with pytest.raises(ValueError, match="if_match=None"):
        client.agents.update(agent.id, if_match=agent.etag, name="Changed")  # created: no ETag
    with pytest.raises(TypeError):
        client.agents.update(agent.id, if_match="", name="Changed")
    assert client.agents.retrieve(agent.id).name == "Untouched"


def test_a_conditional_read_of_an_agent_is_none_while_it_is_unchanged(client, make_agent):
    agent = make_agent(name="Polled")
    read = client.agents.retrieve(agent.id)
    assert client.agents.retrieve(agent.id, if_none_match=read.etag) is None
    assert client.agents.retrieve(agent.id, if_none_match=None) == read  # None: a plain read

    client.agents.update(agent.id, name="Polled and changed")
    fresh = client.agents.retrieve(agent.id, if_none_match=read.etag)
    assert isinstance(fresh, Agent) and fresh.name == "Polled and changed"
    assert is_strong_etag(fresh.etag) and fresh.etag != read.etag
    assert client.agents.retrieve(agent.id, if_none_match=fresh.etag) is None


def test_a_conditional_read_does_not_hide_a_missing_agent(client):
    with pytest.raises(NotFoundError):
        client.agents.retrieve(UNKNOWN_ID, if_none_match="*")


async def test_the_async_client_has_the_same_conditional_calls(aclient, make_agent):
    agent = make_agent(name="Async versioned")
    read = await aclient.agents.retrieve(agent.id)
    assert is_strong_etag(read.etag)
    assert await aclient.agents.retrieve(agent.id, if_none_match=read.etag) is None
    updated = await aclient.agents.update(agent.id, if_match=read.etag, name="Async renamed")
    assert updated.name == "Async renamed" and updated.etag != read.etag
    with pytest.raises(PreconditionFailedError):
        await aclient.agents.update(agent.id, if_match=read.etag, name="Lost update")
    assert (await aclient.agents.retrieve(agent.id, if_none_match=read.etag)).etag == updated.etag


def test_a_delete_with_a_stale_if_match_raises_precondition_failed_and_deletes_nothing(client, make_agent):
    agent = make_agent(name="Kept")
    read = client.agents.retrieve(agent.id)
    client.agents.update(agent.id, instructions="Changed meanwhile.")

    with pytest.raises(PreconditionFailedError) as caught:
        client.agents.delete(agent.id, if_match=read.etag)
    assert (caught.value.code, caught.value.status) == (10061, 412)
    assert "nothing was deleted" in caught.value.message
    current = client.agents.retrieve(agent.id)
    assert current.instructions == "Changed meanwhile."

    client.agents.delete(agent.id, if_match=current.etag)  # still that version: deleted
    with pytest.raises(NotFoundError):
        client.agents.retrieve(agent.id)
    with pytest.raises(NotFoundError):  # gone: a 404, not a 412
        client.agents.delete(agent.id, if_match="*")
    with pytest.raises(ValueError, match="if_match=None"):
        client.agents.delete(agent.id, if_match=agent.etag)  # created: no ETag, nothing sent


async def test_the_async_client_deletes_with_if_match(aclient, make_agent):
    agent = make_agent(name="Async kept")
    read = await aclient.agents.retrieve(agent.id)
    await aclient.agents.update(agent.id, name="Async changed")
    with pytest.raises(PreconditionFailedError):
        await aclient.agents.delete(agent.id, if_match=read.etag)
    current = await aclient.agents.retrieve(agent.id)
    await aclient.agents.delete(agent.id, if_match=current.etag)
    with pytest.raises(NotFoundError):
        await aclient.agents.retrieve(agent.id)


# --- webhooks ---------------------------------------------------------------------------


def test_webhooks_carry_etags_and_take_if_match_and_if_none_match(client, agent):
    hook = client.webhooks.create(name="versioned hook", agent_id=agent.id)
    try:
        assert hook.secret and hook.etag is None  # the answer that shows the secret has no ETag
        read = client.webhooks.retrieve(hook.id)
        assert isinstance(read, Webhook) and is_strong_etag(read.etag)
        assert client.webhooks.retrieve(hook.id, if_none_match=read.etag) is None

        client.webhooks.rotate_secret(hook.id)  # a rotated secret is a new version
        with pytest.raises(PreconditionFailedError) as caught:
            client.webhooks.update(hook.id, if_match=read.etag, enabled=False)
        assert caught.value.code == 10061
        current = client.webhooks.retrieve(hook.id, if_none_match=read.etag)
        assert current is not None and current.enabled is True and current.etag != read.etag

        disabled = client.webhooks.update(hook.id, if_match=current.etag, enabled=False)
        assert disabled.enabled is False and is_strong_etag(disabled.etag) and disabled.etag != current.etag
        assert client.webhooks.retrieve(hook.id, if_none_match=disabled.etag) is None

        with pytest.raises(PreconditionFailedError):  # an older version: nothing is deleted
            client.webhooks.delete(hook.id, if_match=current.etag)
        assert client.webhooks.retrieve(hook.id).etag == disabled.etag
        client.webhooks.delete(hook.id, if_match=disabled.etag)
        with pytest.raises(NotFoundError):
            client.webhooks.retrieve(hook.id)
    finally:
        try:
            client.webhooks.delete(hook.id)
        except NotFoundError:
            pass


# --- files -------------------------------------------------------------------------------


def test_polling_a_file_with_if_none_match(client):
    uploaded = client.files.upload(b"Conditional reads save the transfer.\n", filename="polled.txt")
    try:
        etag, seen, file = None, [], None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = client.files.retrieve(uploaded.id, if_none_match=etag)
            if answer is not None:  # new or changed: the whole file, with its version
                assert isinstance(answer, File) and is_strong_etag(answer.etag) and answer.etag != etag
                file, etag = answer, answer.etag
                seen.append(file.status)
                if file.status in ("ready", "failed"):
                    break
            time.sleep(0.1)
        assert file is not None and file.status == "ready", seen

        # Nothing changes a ready file: every further poll is a 304.
        assert client.files.retrieve(uploaded.id, if_none_match=etag) is None
        assert client.files.retrieve(uploaded.id).etag == etag
        assert client.files.wait_until_ready(uploaded.id, timeout=10).etag == etag
    finally:
        client.files.delete(uploaded.id)


def test_a_file_delete_with_the_etag_of_an_older_version_raises_and_keeps_the_file(client):
    uploaded = client.files.upload(b"Deleted only as it was read.\n", filename="guarded.txt")
    try:
        first = client.files.retrieve(uploaded.id)
        ready = client.files.wait_until_ready(uploaded.id, timeout=60)
        if ready.etag != first.etag:  # ingested since the first read: a new version
            with pytest.raises(PreconditionFailedError):
                client.files.delete(uploaded.id, if_match=first.etag)
            assert client.files.retrieve(uploaded.id).status == "ready"
        with pytest.raises(PreconditionFailedError):
            client.files.delete(uploaded.id, if_match='"not-this-version"')
        client.files.delete(uploaded.id, if_match=ready.etag)
        with pytest.raises(NotFoundError):
            client.files.retrieve(uploaded.id)
    finally:
        try:
            client.files.delete(uploaded.id)
        except NotFoundError:
            pass


# --- the wire: headers sent, no retry ------------------------------------------------------


def test_the_conditional_headers_are_sent_and_a_304_or_412_is_not_retried(scripted):
    agent = {"id": "a1", "name": "Reviewer"}
    stale = {"code": 10061, "message": "The object changed since the version named in If-Match.", "data": {}}
    server = scripted(
        Reply(200, envelope(agent), headers={"ETag": '"v1"'}),
        Reply(304, b"", headers={"ETag": '"v1"'}),
        Reply(412, stale, headers={"X-Request-Id": "req_412"}),
        Reply(200, envelope(agent)),
    )
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=2) as client:
        read = client.agents.retrieve("a1")
        assert read.etag == '"v1"'
        assert client.agents.retrieve("a1", if_none_match=read.etag) is None
        with pytest.raises(PreconditionFailedError) as caught:
            client.agents.update("a1", if_match=read.etag, name="Renamed")
        assert caught.value.request_id == "req_412"
        plain = client.agents.update("a1", name="Renamed")
        assert plain.etag is None  # an answer without ETag
    headers = [{k.lower(): v for k, v in r.headers.items()} for r in server.requests]
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v1/combo/agents/a1"),
        ("GET", "/v1/combo/agents/a1"),
        ("PATCH", "/v1/combo/agents/a1"),
        ("PATCH", "/v1/combo/agents/a1"),
    ]
    assert "if-none-match" not in headers[0] and headers[1]["if-none-match"] == '"v1"'
    assert headers[2]["if-match"] == '"v1"' and "if-match" not in headers[3]


def test_a_304_to_a_plain_read_is_still_an_error(scripted):
    server = scripted(Reply(304, b""))
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=0) as client:
        with pytest.raises(combo_sdk.ComboAPIError) as caught:
            client.files.retrieve("f1")
    assert caught.value.status == 304


def test_10061_and_412_map_to_precondition_failed():
    assert error_class(10061, 412) is PreconditionFailedError
    assert error_class(None, 412) is PreconditionFailedError
    assert "PreconditionFailedError" in combo_sdk.__all__ and combo_sdk.PreconditionFailedError is PreconditionFailedError


def test_delete_sends_if_match_and_a_412_is_not_retried(scripted):
    stale = {"code": 10061, "message": "The object changed since the version named in If-Match; nothing was "
             "deleted.", "data": {}}
    server = scripted(Reply(412, stale), Reply(204, b""))
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=2) as client:
        with pytest.raises(PreconditionFailedError):
            client.webhooks.delete("w1", if_match='"v1"')
        assert client.files.delete("f1", if_match="*") is None
    assert [(r.method, r.path) for r in server.requests] == [
        ("DELETE", "/v1/integrations/webhooks/w1"), ("DELETE", "/v1/combo/files/f1"),
    ]
    assert [r.headers.get("If-Match") for r in server.requests] == ['"v1"', "*"]


def test_wait_until_ready_polls_with_if_none_match_of_the_last_etag(scripted):
    server = scripted(
        Reply(200, envelope({"id": "f1", "status": "queued"}), headers={"ETag": '"v1"'}),
        Reply(304, b"", headers={"ETag": '"v1"'}),
        Reply(200, envelope({"id": "f1", "status": "processing"}), headers={"ETag": '"v2"'}),
        Reply(304, b"", headers={"ETag": '"v2"'}),
        Reply(200, envelope({"id": "f1", "status": "ready", "chunk_count": 3}), headers={"ETag": '"v3"'}),
    )
    with ComboAgent(api_key="ragflow-test", base_url=server.url, max_retries=0) as client:
        ready = client.files.wait_until_ready("f1", poll_interval=0.01)
    assert ready.is_ready and ready.chunk_count == 3 and ready.etag == '"v3"'
    assert [r.path for r in server.requests] == ["/v1/combo/files/f1"] * 5
    assert [r.headers.get("If-None-Match") for r in server.requests] == [None, '"v1"', '"v1"', '"v2"', '"v2"']


def test_wait_until_ready_reads_in_full_from_a_server_without_etags(scripted):
    server = scripted(
        Reply(200, envelope({"id": "f1", "status": "queued"})),
        Reply(200, envelope({"id": "f1", "status": "ready"})),
    )
    with ComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        assert client.files.wait_until_ready("f1", poll_interval=0.01).is_ready
    assert [r.headers.get("If-None-Match") for r in server.requests] == [None, None]


async def test_the_async_wait_until_ready_polls_with_if_none_match(scripted):
    from combo_sdk import AsyncComboAgent

    server = scripted(
        Reply(200, envelope({"id": "f1", "status": "processing"}), headers={"ETag": '"v1"'}),
        Reply(304, b"", headers={"ETag": '"v1"'}),
        Reply(200, envelope({"id": "f1", "status": "ready"}), headers={"ETag": '"v2"'}),
    )
    async with AsyncComboAgent(api_key="ragflow-test", base_url=server.url) as client:
        ready = await client.files.wait_until_ready("f1", poll_interval=0.01)
    assert ready.is_ready and ready.etag == '"v2"'
    assert [r.headers.get("If-None-Match") for r in server.requests] == [None, '"v1"', '"v1"']
