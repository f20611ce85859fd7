"""The stream path's database step in two halves: the answer starts while the question's rows are written."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from accounts import services as accounts
from accounts.models import ApiKey
from agents import services as agents
from agents.completions import (
    CompletionRun,
    PrepareSpec,
    completion_check_many,
    completion_record_many,
)
from agents.models import Message, Session
from combo import batching
from combo.batching import CheckThenRecord
from combo.errors import ComboError, ErrorCode


async def test_callers_go_on_with_their_results_while_the_records_are_written():
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    written: list[str] = []

    def check(items):
        return [ValueError(f"bad {i}") if i < 0 else (i * 10, f"row {i}") for i in items]

    def record(rows):
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        written.extend(rows)
        return [None] * len(rows)

    pipeline = CheckThenRecord(check, record)
    calls = [asyncio.ensure_future(pipeline(i)) for i in (1, -2, 3)]
    value, recorded = await asyncio.wait_for(calls[0], 5)  # while `record` is still held
    assert value == 10 and not recorded.done() and written == []
    with pytest.raises(ValueError, match="bad -2"):
        await calls[1]
    release.set()
    third, third_recorded = await calls[2]
    assert third == 30
    assert await asyncio.wait_for(recorded, 5) is None and await third_recorded is None
    assert written == ["row 1", "row 3"]


async def test_a_record_that_fails_fails_only_its_own_future():
    def record(rows):
        return [RuntimeError("constraint") if row == "row 2" else None for row in rows]

    pipeline = CheckThenRecord(lambda items: [(i, f"row {i}") for i in items], record)
    results = await asyncio.gather(*(pipeline(i) for i in (1, 2, 3)))
    outcomes = await asyncio.gather(*(recorded for _, recorded in results), return_exceptions=True)
    assert [None if o is None else str(o) for o in outcomes] == [None, "constraint", None]


def logged_steps(log: list[str], release: asyncio.Event):
    """A check and a record that log what they do; each record waits for `release`."""
    loop = asyncio.get_running_loop()

    def check(items):
        log.append(f"check {items}")
        return [(i, i) for i in items]

    def record(rows):
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        log.append(f"record {rows}")
        return [None] * len(rows)

    return check, record


async def test_a_check_never_runs_ahead_of_the_records_of_earlier_checks():
    release = asyncio.Event()
    log: list[str] = []
    pipeline = CheckThenRecord(*logged_steps(log, release))
    _, first_recorded = await pipeline(1)
    second = asyncio.ensure_future(pipeline(2))  # arrives while the first's rows are being written
    await asyncio.sleep(0.05)
    assert log == ["check [1]"]
    release.set()
    _, second_recorded = await second
    await first_recorded
    # The second's record too: it is still in the database thread, scheduling `release.wait()`
    # on this loop, and a loop closed before it ran would leave that coroutine never awaited.
    await asyncio.wait_for(second_recorded, 5)
    assert log == ["check [1]", "record [1]", "check [2]", "record [2]"]


@pytest.mark.parametrize("hop_seconds", [batching.HOP_SECONDS, 0.0], ids=["within a hop", "past its time"])
async def test_the_database_thread_takes_the_next_batch_without_waiting_for_the_loop(monkeypatch, hop_seconds):
    # Past HOP_SECONDS too: with no other batched step waiting, the hop goes on.
    monkeypatch.setattr(batching, "HOP_SECONDS", hop_seconds)
    queued = threading.Event()
    checked: dict[tuple, float] = {}

    def check(items):
        checked[tuple(items)] = time.monotonic()
        return [(i, i) for i in items]

    def record(rows):
        if rows == [1]:
            queued.wait(5)  # the second question is waiting before this batch ends
        return [None] * len(rows)

    pipeline = CheckThenRecord(check, record)
    await pipeline(1)  # checked; its record is held
    second = asyncio.ensure_future(pipeline(2))
    await asyncio.sleep(0)  # the second question joins the queue
    queued.set()
    time.sleep(0.3)  # the event loop is busy and can send the thread nothing
    busy_until = time.monotonic()
    await asyncio.wait_for(second, 5)
    assert checked[(2,)] < busy_until


async def test_a_long_burst_leaves_the_thread_to_other_batched_steps_between_hops(monkeypatch):
    monkeypatch.setattr(batching, "HOP_SECONDS", 0.0)  # every batch is a hop of its own when others wait
    release = asyncio.Event()
    log: list[str] = []
    pipeline = CheckThenRecord(*logged_steps(log, release))
    await pipeline(1)
    second = asyncio.ensure_future(pipeline(2))
    await asyncio.sleep(0)
    others = batching.Batcher(lambda items: [log.append("other work") for _ in items])
    other = asyncio.ensure_future(others("finish"))
    await asyncio.sleep(0.05)
    release.set()
    (_, second_recorded), _ = await asyncio.wait_for(asyncio.gather(second, other), 5)
    await asyncio.wait_for(second_recorded, 5)  # the caller has its result before its record is written
    assert log == ["check [1]", "record [1]", "other work", "check [2]", "record [2]"]
    assert batching._waiting == 0


async def test_a_step_cancelled_before_the_thread_took_it_is_no_longer_counted_as_waiting():
    hold, entered = threading.Event(), threading.Event()

    def busy(items):
        entered.set()
        hold.wait(5)
        return items

    first = asyncio.ensure_future(batching.Batcher(busy)("a"))  # holds the database thread
    await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
    waiting = asyncio.ensure_future(batching._database_step(lambda: "b")())
    await asyncio.sleep(0.05)
    assert batching.others_waiting()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not batching.others_waiting()
    hold.set()
    assert await asyncio.wait_for(first, 5) == "a"


async def test_a_result_whose_caller_left_is_orphaned_and_still_recorded():
    loop = asyncio.get_running_loop()
    started, release = asyncio.Event(), asyncio.Event()
    orphans: list[tuple] = []
    written: list[int] = []

    def check(items):
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        return [(i + 1, i) for i in items]

    def record(rows):
        written.extend(rows)
        return [None] * len(rows)

    pipeline = CheckThenRecord(check, record, orphan=lambda value, recorded: orphans.append((value, recorded)))
    waiting = asyncio.ensure_future(pipeline(41))
    await started.wait()
    waiting.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(100):
        if orphans and orphans[0][1].done():
            break
        await asyncio.sleep(0.01)
    assert orphans[0][0] == 42 and orphans[0][1].result() is None and written == [41]


async def test_an_orphans_own_database_steps_run_rather_than_being_refused_as_a_deadlock():
    """Work started for an orphan (its answer, then saving it) takes the database thread like any other step.

    The results are handed over from that thread; a task started there used to
    inherit its context, and asgiref then refused the task's own database step
    ("Single thread executor already being used, would deadlock").
    """
    from asgiref.sync import sync_to_async

    loop = asyncio.get_running_loop()
    started, release = asyncio.Event(), asyncio.Event()
    saved: list = []

    def check(items):
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
        return [(i, i) for i in items]

    async def save(value):
        saved.append(await sync_to_async(lambda: ("saved", value, threading.current_thread().name))())

    tasks: list[asyncio.Task] = []
    pipeline = CheckThenRecord(
        check, lambda rows: [None] * len(rows), orphan=lambda value, recorded: tasks.append(loop.create_task(save(value)))
    )
    waiting = asyncio.ensure_future(pipeline(7))
    await started.wait()
    waiting.cancel()
    release.set()
    for _ in range(100):
        if tasks:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(tasks[0], 5)  # raised RuntimeError before
    assert saved and saved[0][:2] == ("saved", 7)


async def test_a_check_that_fails_as_a_whole_fails_each_caller_and_records_nothing():
    written: list = []

    def check(items):
        raise RuntimeError("database gone")

    pipeline = CheckThenRecord(check, lambda rows: written.extend(rows) or [None] * len(rows))
    results = await asyncio.gather(pipeline(1), pipeline(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database gone", "database gone"] and written == []


async def test_stopping_the_pipeline_cancels_the_callers_it_has_not_served():
    loop = asyncio.get_running_loop()
    started, release = asyncio.Event(), asyncio.Event()
    returned = threading.Event()

    def check(items):
        try:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=5)
            return [(i, i) for i in items]
        finally:
            returned.set()

    pipeline = CheckThenRecord(check, lambda rows: [None] * len(rows))
    first = asyncio.ensure_future(pipeline(1))
    await started.wait()
    second = asyncio.ensure_future(pipeline(2))  # waits for the next batch
    await asyncio.sleep(0)
    for task in list(pipeline._tasks):
        task.cancel()
    await asyncio.sleep(0)
    for call in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await call
    release.set()
    deadline = loop.time() + 5
    while not returned.is_set():  # the hop already in the thread finishes before this loop ends
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


# --- the two halves on the database --------------------------------------------------------------

def test_checking_writes_nothing_and_the_record_writes_the_question_and_the_key_use(alice):
    agent = agents.agent_create(owner=alice.user, name="A", llm_provider="builtin")
    ApiKey.objects.update(last_used_at=None)
    principal = accounts.authenticate_bearers([f"Bearer {alice.api_key}"], defer_touch=True)[0]
    assert ApiKey.objects.get(pk=principal.api_key.pk).last_used_at is None

    (prepared, record), = completion_check_many([PrepareSpec(alice.user, agent.id, "hello")])
    assert not Session.objects.filter(id=prepared.session_id).exists()
    record.api_key = principal.api_key
    assert completion_record_many([record]) == [None]
    assert list(Message.objects.filter(session_id=prepared.session_id).order_by("created_at").values_list(
        "role", "content", "status")) == [("user", "hello", "complete"), ("assistant", "", "in_progress")]
    assert ApiKey.objects.get(pk=principal.api_key.pk).last_used_at is not None


def test_an_answer_whose_question_could_not_be_saved_shows_no_text_and_saves_nothing(alice):
    agent = agents.agent_create(owner=alice.user, name="A", instructions="Be brief.", llm_provider="builtin")
    (prepared, _), = completion_check_many([PrepareSpec(alice.user, agent.id, "hello")])

    async def run_with_a_failed_record():
        recorded = asyncio.get_running_loop().create_future()
        recorded.set_exception(RuntimeError("disk full"))
        run = CompletionRun(prepared, recorded=recorded).start()
        await asyncio.wait_for(run.wait(), 10)
        return run

    run = async_to_sync(run_with_a_failed_record)()
    assert run.parts == [] and run.status == Message.Status.FAILED
    assert run.error.error == ErrorCode.INTERNAL_ERROR and "could not be saved" in run.error.message
    assert not Message.objects.filter(session_id=prepared.session_id).exists()


# Transactional: SQLite checks the foreign keys at commit, which the usual per-test transaction never reaches.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deleted", ["session", "agent"])
def test_a_question_whose_session_or_agent_is_deleted_after_its_checks_is_a_404(alice, deleted):
    agent = agents.agent_create(owner=alice.user, name="A", llm_provider="builtin")
    session = agents.session_create(agent=agent, owner=alice.user)
    specs = [PrepareSpec(alice.user, agent.id, "into the session", session.id), PrepareSpec(alice.user, agent.id, "new")]
    alone, together = completion_check_many(specs), completion_check_many(specs)
    if deleted == "session":
        agents.session_delete(session=session)
    else:
        agents.agent_delete(agent=agent)

    # Alone (a batch of one raised the database's error) and in a batch.
    outcomes = [completion_record_many([record])[0] for _, record in alone]
    outcomes += completion_record_many([record for _, record in together])
    gone = [(ErrorCode.NOT_FOUND, "No session with this id for this agent."), None]
    if deleted == "agent":
        gone[1] = (ErrorCode.NOT_FOUND, "No agent with this id.")
    assert [outcome and (outcome.error, outcome.message) for outcome in outcomes] == gone * 2
    assert not Message.objects.filter(session_id=session.id).exists()


def test_an_answer_whose_session_was_deleted_before_its_question_was_saved_says_so(alice):
    agent = agents.agent_create(owner=alice.user, name="A", llm_provider="builtin")
    (prepared, _), = completion_check_many([PrepareSpec(alice.user, agent.id, "hello")])
    gone = ComboError(ErrorCode.NOT_FOUND, "No session with this id for this agent.")

    async def run_with_a_failed_record():
        recorded = asyncio.get_running_loop().create_future()
        recorded.set_exception(gone)
        run = CompletionRun(prepared, recorded=recorded).start()
        await asyncio.wait_for(run.wait(), 10)
        return run

    run = async_to_sync(run_with_a_failed_record)()
    assert run.parts == [] and run.status == Message.Status.FAILED and run.error is gone


def test_a_batch_write_that_fails_is_retried_one_item_at_a_time_so_only_the_bad_item_fails():
    from django.db import DatabaseError

    from combo.db import write_batch

    calls: list[list[str]] = []

    def write(items):
        calls.append(list(items))
        if "bad" in items:
            raise DatabaseError("constraint")

    results = write_batch(["a", "bad", "c"], write)
    assert [None if r is None else str(r) for r in results] == [None, "constraint", None]
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    with pytest.raises(DatabaseError):
        write_batch(["bad"], write)
    assert write_batch([], write) == []
