"""How a run's parts become SSE frames: everything new since the last frame goes in the next."""

from __future__ import annotations

import asyncio
import json
import uuid

from agents import streaming
from agents.completions import CompletionRun, Prepared
from agents.llm.base import ChatMessage, ChatRequest


def prepared() -> Prepared:
    return Prepared(
        session_id=uuid.uuid4(), user_message_id=uuid.uuid4(), message_id=uuid.uuid4(), provider_name="builtin",
        request=ChatRequest(messages=[ChatMessage("user", "q")], model="m"), references=[{"id": "p1"}],
        created_session=True,
    )


def parse(frame: bytes) -> tuple[str, dict]:
    event, data = frame.decode().strip().split("\n")
    return event.removeprefix("event: "), json.loads(data.removeprefix("data: "))


async def until(condition):
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the reader did not get there")


def read_frames(run) -> tuple[asyncio.Future, list[bytes]]:
    """A reader of the run's frames, started now: (its task, the frames it has so far)."""
    frames: list[bytes] = []

    async def consume():
        async for frame in streaming.sse_frames(run, run.prepared, "req-1"):
            frames.append(frame)

    return asyncio.ensure_future(consume()), frames


def add(run, *parts):
    for part in parts:
        run.parts.append(part)
        run.wake()


async def test_parts_ready_together_share_a_frame_and_the_last_carries_the_references():
    run = CompletionRun(prepared())
    task, frames = read_frames(run)
    add(run, "a")
    await until(lambda: len(frames) == 1)
    add(run, "b", "c")  # both before the reader wakes: one frame
    await until(lambda: len(frames) == 2)
    add(run, "d")
    run.finished.set()
    run.wake()
    await asyncio.wait_for(task, 5)
    events = [parse(f) for f in frames]
    assert [(kind, data.get("answer"), data.get("reference")) for kind, data in events] == [
        ("message", "a", []),
        ("message", "bc", []),
        ("message", "d", [{"id": "p1"}]),
        ("done", None, None),
    ]
    assert all(data["type"] == kind for kind, data in events)


async def test_a_run_that_ends_with_nothing_new_still_sends_the_references_then_done():
    run = CompletionRun(prepared())
    task, frames = read_frames(run)
    add(run, "x")
    await until(lambda: len(frames) == 1)
    run.finished.set()
    run.wake()
    await asyncio.wait_for(task, 5)
    assert [parse(f)[0] for f in frames] == ["message", "message", "done"]
    assert parse(frames[1])[1] == {"type": "message", "answer": "", "reference": [{"id": "p1"}]}


async def test_a_frame_that_cannot_be_made_ends_the_stream_with_an_error_then_done(caplog):
    # Providers' text is cleaned before it reaches the run (storable_text); this is the last line of defence.
    run = CompletionRun(prepared())
    task, frames = read_frames(run)
    add(run, "fine")
    await until(lambda: len(frames) == 1)
    add(run, "no UTF-8 for \ud800")
    await asyncio.wait_for(task, 5)
    events = [parse(f) for f in frames]
    assert [kind for kind, _ in events] == ["message", "error", "done"]
    assert (events[1][1]["code"], events[1][1]["data"]["request_id"]) == (20001, "req-1")
    assert events[2][1]["message_id"] == str(run.prepared.message_id)
    assert "the stream failed" in caplog.text


def test_a_message_frame_is_byte_for_byte_the_generic_frame():
    references = [{"id": "f:1", "file_name": "a \"b\".md", "content": "line\nnext \u00e9", "score": 0.5,
                   "position": {"page": 3}}]
    for answer in ["", " tok", 'q"uote \\ back', "line\nbreak\ttab\r\x01", "\u00e9t\u00e9 \U0001f600 </script>"]:
        for reference in ([], references):
            expected = streaming._frame("message", {"answer": answer, "reference": reference})
            assert streaming._message_frame(answer, reference) == expected
            assert parse(expected) == ("message", {"type": "message", "answer": answer, "reference": reference})
