"""The batched database steps of the completion path give each request what it would get alone."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from django.utils import timezone

from accounts import services as accounts
from agents import services as agents
from agents.completions import (
    Outcome,
    PrepareSpec,
    completion_finish_many,
    completion_prepare_many,
    record_now,
)
from agents.llm.base import ChatMessage, Usage
from agents.models import Message, Session
from agents.reaper import reap_interrupted
from agents.serializers import CompletionRequestSerializer
from agents.streaming import _Ask, _authorize_and_check_many, _plainly_valid
from combo.batching import Batcher
from combo.errors import ComboError, ErrorCode


@pytest.fixture
def agent(alice):
    return agents.agent_create(owner=alice.user, name="A", instructions="Be brief.", llm_provider="builtin")


def _authorize_and_prepare_many(asks):
    """The stream path's checks with their records written at once: (prepared, stream, limit_headers) each."""
    return record_now(_authorize_and_check_many(asks))


def _authorize_and_prepare(authorization, body, agent_id):
    result = _authorize_and_prepare_many([_Ask(authorization, body, agent_id)])[0]
    if isinstance(result, BaseException):
        raise result
    return result


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


# --- prepare ------------------------------------------------------------------------------------

def test_a_batch_prepares_each_question_as_if_it_came_alone(alice, bob, agent):
    session = agents.session_create(agent=agent, owner=alice.user, title="old")
    Message.objects.create(session=session, role="user", content="earlier question")
    Message.objects.create(session=session, role="assistant", content="earlier answer")
    bobs_session = agents.session_create(
        agent=agents.agent_create(owner=bob.user, name="B"), owner=bob.user, title="bob's"
    )
    specs = [
        PrepareSpec(alice.user, agent.id, "new one"),
        PrepareSpec(alice.user, agent.id, "first into the old session", session.id),
        PrepareSpec(bob.user, agent.id, "not bob's agent"),
        PrepareSpec(alice.user, agent.id, "second into the old session", str(session.id)),
        PrepareSpec(alice.user, "not-a-uuid", "bad agent id"),
        PrepareSpec(alice.user, agent.id, "someone else's session", bobs_session.id),
    ]
    results = completion_prepare_many(specs)

    new, first, not_bobs, second, bad_id, foreign = results
    assert isinstance(not_bobs, ComboError) and not_bobs.error == ErrorCode.NOT_FOUND
    assert isinstance(bad_id, ComboError) and bad_id.error == ErrorCode.NOT_FOUND
    assert isinstance(foreign, ComboError) and foreign.error == ErrorCode.NOT_FOUND

    assert new.created_session and Session.objects.get(id=new.session_id).title == "new one"
    assert new.request.messages == [
        ChatMessage("system", "Be brief."), ChatMessage("user", "new one"),
    ]
    assert first.session_id == second.session_id == session.id and not first.created_session
    assert first.request.messages[1:] == [
        ChatMessage("user", "earlier question"),
        ChatMessage("assistant", "earlier answer"),
        ChatMessage("user", "first into the old session"),
    ]
    # The second question of the batch sees the first, as it would have one after the other.
    assert second.request.messages[-2:] == [
        ChatMessage("user", "first into the old session"),
        ChatMessage("user", "second into the old session"),
    ]
    stored = list(Message.objects.filter(session=session).order_by("created_at", "id").values_list(
        "role", "content", "status"))
    assert stored == [
        ("user", "earlier question", "complete"),
        ("assistant", "earlier answer", "complete"),
        ("user", "first into the old session", "complete"),
        ("assistant", "", "in_progress"),
        ("user", "second into the old session", "complete"),
        ("assistant", "", "in_progress"),
    ]
    assistant = Message.objects.get(id=second.message_id)
    assert (assistant.provider, assistant.model, assistant.references) == ("builtin", "builtin", [])
    assert Session.objects.count() == 3  # the old two and the new one; nothing for the failures


def test_a_new_session_starts_with_the_opening_message_and_it_is_in_the_prompt(alice):
    greeter = agents.agent_create(owner=alice.user, name="G", opening_message="Hi, ask me.", llm_provider="builtin")
    prepared = completion_prepare_many([PrepareSpec(alice.user, greeter.id, "hello")])[0]
    stored = list(Message.objects.filter(session_id=prepared.session_id).order_by("created_at").values_list(
        "role", "content", "status"))
    assert stored == [
        ("assistant", "Hi, ask me.", "complete"), ("user", "hello", "complete"), ("assistant", "", "in_progress"),
    ]
    assert prepared.request.messages == [ChatMessage("assistant", "Hi, ask me."), ChatMessage("user", "hello")]


# --- finish -------------------------------------------------------------------------------------

def test_finishing_records_every_outcome_over_a_reapers_mark_but_not_over_a_finished_one(alice, agent):
    one, two, three = completion_prepare_many(
        [PrepareSpec(alice.user, agent.id, q) for q in ("a", "b", "c")]
    )
    # The reaper marked `two` while a live process was still answering it (an
    # answer that ran past COMBO_REAPER_TIMEOUT_SECONDS); `three` is finished.
    reap_interrupted(older_than_seconds=-1)
    Message.objects.filter(id=one.message_id).update(status=Message.Status.IN_PROGRESS)
    Message.objects.filter(id=three.message_id).update(status=Message.Status.FAILED, content="first")
    error = ComboError(ErrorCode.UPSTREAM_TIMEOUT, "slow")
    assert completion_finish_many([
        Outcome(one.message_id, "the answer", Message.Status.COMPLETE, Usage(3, 4), None, 12),
        Outcome(two.message_id, "late but whole", Message.Status.COMPLETE, None, None, 99),
        Outcome(three.message_id, "again", Message.Status.FAILED, None, error, 5),
    ]) == [None, None, None]
    done = Message.objects.get(id=one.message_id)
    assert (done.content, done.status, done.prompt_tokens, done.completion_tokens, done.latency_ms) == (
        "the answer", "complete", 3, 4, 12)
    assert done.completed_at is not None and done.completed_at <= timezone.now()
    late = Message.objects.get(id=two.message_id)
    assert (late.status, late.content, late.error_code) == ("complete", "late but whole", None)
    finished = Message.objects.get(id=three.message_id)
    assert (finished.status, finished.content) == ("failed", "first")


def test_a_failed_outcome_keeps_its_error(alice, agent):
    prepared = completion_prepare_many([PrepareSpec(alice.user, agent.id, "a")])[0]
    error = ComboError(ErrorCode.UPSTREAM_TIMEOUT, "x" * 600)
    completion_finish_many([Outcome(prepared.message_id, "part", Message.Status.FAILED, None, error, 5)])
    stored = Message.objects.get(id=prepared.message_id)
    assert (stored.status, stored.error_code, len(stored.error_message)) == ("failed", error.error.code, 500)


# --- authorize and validate ---------------------------------------------------------------------

def test_a_batch_authorizes_each_request_on_its_own(alice, bob, agent):
    revoked = accounts.api_key_create(owner=alice.user, name="old")
    accounts.api_key_revoke(api_key=revoked.api_key)
    good = f"Bearer {alice.api_key}"
    asks = [
        _Ask(None, body(question="q"), str(agent.id)),
        _Ask("Bearer ragflow-not-a-key", body(question="q"), str(agent.id)),
        _Ask(f"Bearer {revoked.plain_key}", body(question="q"), str(agent.id)),
        _Ask(good, b"{not json", str(agent.id)),
        _Ask(good, body(question="   "), str(agent.id)),
        _Ask(f"Bearer {bob.api_key}", body(question="q"), str(agent.id)),
        _Ask(None, b"{not json", str(agent.id)),  # credentials are judged before the body
        _Ask(good, body(question="  fine  ", stream=True), str(agent.id)),
        _Ask(f"Bearer {alice.jwt}", body(question="by token"), str(agent.id)),
    ]
    results = _authorize_and_prepare_many(asks)
    codes = [r.error for r in results[:7]]
    assert codes == [
        ErrorCode.UNAUTHENTICATED, ErrorCode.CREDENTIAL_INVALID, ErrorCode.CREDENTIAL_REVOKED,
        ErrorCode.MALFORMED_BODY, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND, ErrorCode.UNAUTHENTICATED,
    ]
    prepared, stream, _headers = results[7]
    assert stream is True and prepared.request.messages[-1] == ChatMessage("user", "fine")
    assert results[8][0].request.messages[-1].content == "by token"
    # The batch of one is the same step.
    with pytest.raises(ComboError) as caught:
        _authorize_and_prepare(None, body(question="q"), str(agent.id))
    assert caught.value.error == ErrorCode.UNAUTHENTICATED


def test_the_bearer_batch_reads_each_header_as_the_single_reader_does(alice, bob):
    revoked = accounts.api_key_create(owner=alice.user, name="old")
    accounts.api_key_revoke(api_key=revoked.api_key)
    headers = [None, "", "Basic abc", "Bearer a b", f"Bearer {alice.api_key}", f"bearer {bob.api_key}",
               f"Bearer {revoked.plain_key}", "Bearer ragflow-xyz", f"Bearer {alice.jwt}", "Bearer not.a.jwt",
               f"Bearer {alice.api_key[:-1]}{'A' if alice.api_key[-1] != 'A' else 'B'}"]

    def single(header):
        try:
            principal = accounts.authenticate_bearer(header)
        except ComboError as exc:
            return ("error", exc.error)
        return None if principal is None else ("ok", principal.user.pk, principal.kind)

    def batched(result):
        if isinstance(result, ComboError):
            return ("error", result.error)
        return None if result is None else ("ok", result.user.pk, result.kind)

    assert [batched(r) for r in accounts.authenticate_bearers(headers)] == [single(h) for h in headers]


@pytest.mark.parametrize(
    "payload",
    [
        {"question": "hi"},
        {"question": "  hi  ", "stream": True},
        {"question": "hi", "stream": False, "session_id": None},
        {"question": "hi", "session_id": "0b1c6f0e-9a52-4c3b-8d5e-2f4a6b8c9d0e"},
        {"question": "hi", "session_id": "0B1C6F0E9A524C3B8D5E2F4A6B8C9D0E"},
        {"question": "hi", "session_id": "{0b1c6f0e-9a52-4c3b-8d5e-2f4a6b8c9d0e}"},
        {"question": "hi", "session_id": "nope"},
        {"question": "hi", "session_id": 12},
        {"question": "hi", "stream": "true"},
        {"question": "hi", "stream": 1},
        {"question": ""},
        {"question": "   "},
        {"question": None},
        {"question": 5},
        {"question": "x" * 8000},
        {"question": " " + "x" * 8000 + " "},
        {"question": "x" * 8001},
        {"question": "nul\x00here"},
        {"question": "lone \ud800 surrogate"},
        {"question": "hi", "extra": 1},
        {},
    ],
)
def test_the_plain_validation_agrees_with_the_serializer(payload):
    serializer = CompletionRequestSerializer(data=payload)
    valid = serializer.is_valid()
    fast = _plainly_valid(payload)
    if fast is None:
        return  # the serializer decides (and words the errors)
    assert valid, f"the fast path accepted what the serializer refuses: {serializer.errors}"
    expected = dict(serializer.validated_data)
    expected.setdefault("session_id", None)
    assert fast == expected


# --- the batcher ----------------------------------------------------------------------------------

async def test_the_batcher_hands_each_caller_its_own_result_and_runs_concurrent_calls_together():
    seen: list[list[int]] = []

    def process(items):
        seen.append(list(items))
        return [ValueError(f"bad {i}") if i % 3 == 0 else i * 10 for i in items]

    batch = Batcher(process, max_batch=4)
    results = await asyncio.gather(*(batch(i) for i in range(1, 8)), return_exceptions=True)
    assert [r if not isinstance(r, Exception) else str(r) for r in results] == [
        10, 20, "bad 3", 40, 50, "bad 6", 70,
    ]
    assert seen == [[1, 2, 3, 4], [5, 6, 7]]


async def test_a_result_whose_caller_left_goes_to_the_orphan_hook():
    started = asyncio.Event()
    release = asyncio.Event()
    orphans: list[int] = []
    loop = asyncio.get_running_loop()

    def process(items):
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        return [i + 1 for i in items]

    batch = Batcher(process, orphan=orphans.append)
    waiting = asyncio.ensure_future(batch(41))
    await started.wait()
    waiting.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(50):
        if orphans:
            break
        await asyncio.sleep(0.01)
    assert orphans == [42]


async def test_a_batch_that_fails_as_a_whole_fails_each_of_its_callers():
    def process(items):
        raise RuntimeError("database gone")

    batch = Batcher(process)
    results = await asyncio.gather(batch(1), batch(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database gone", "database gone"]


def test_a_uuid_for_every_row_is_distinct_and_version_4():
    from combo.db import new_uuids

    ids = new_uuids(1000)
    assert len(set(ids)) == 1000 and all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


def test_the_bearer_batch_notes_when_each_key_was_used_at_most_once_a_window(alice, bob):
    from accounts.models import ApiKey

    headers = [f"Bearer {alice.api_key}", f"Bearer {bob.api_key}", f"Bearer {alice.api_key}"]
    accounts.authenticate_bearers(headers)
    used = dict(ApiKey.objects.values_list("owner__username", "last_used_at"))
    assert used["alice"] is not None and used["bob"] is not None
    accounts.authenticate_bearers(headers)
    assert dict(ApiKey.objects.values_list("owner__username", "last_used_at")) == used  # within the window
