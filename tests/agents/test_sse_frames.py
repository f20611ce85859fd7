"""How a run's parts become SSE frames: all that is new goes in the next frame; under load, after a pause."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

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


async def follow(run, loaded: bool, monkeypatch, script):
    """Run `script(run, gate, frames)` against sse_frames; returns the (event, data) pairs."""
    gate = asyncio.Event()

    async def pause(seconds):
        await gate.wait()
        gate.clear()

    monkeypatch.setattr(streaming, "_pause", pause)
    monkeypatch.setattr(streaming, "PACE_LAG", -1.0 if loaded else 1e9)
    frames: list[bytes] = []

    async def consume():
        async for frame in streaming.sse_frames(run, run.prepared, "req-1"):
            frames.append(frame)

    task = asyncio.ensure_future(consume())
    await script(run, gate, frames)
    await asyncio.wait_for(task, 5)
    return [parse(f) for f in frames]


async def until(condition):
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the reader did not get there")


def add(run, *parts):
    for part in parts:
        run.parts.append(part)
        run.wake()


async def finish(run):
    run.finished.set()
    run.wake()


@pytest.mark.parametrize("loaded", [False, True])
async def test_tokens_that_come_while_a_loaded_stream_pauses_share_one_frame(monkeypatch, loaded):
    async def script(run, gate, frames):
        add(run, "a")
        await until(lambda: len(frames) == 1)
        add(run, "b")
        if not loaded:
            await until(lambda: len(frames) == 2)
        add(run, "c", "d")
        gate.set()
        await until(lambda: len(frames) == (2 if loaded else 3))
        await finish(run)
        gate.set()

    events = await follow(CompletionRun(prepared()), loaded, monkeypatch, script)
    answers = [data["answer"] for kind, data in events if kind == "message"]
    assert answers == (["a", "bcd", ""] if loaded else ["a", "b", "cd", ""])
    assert all(data["type"] == kind for kind, data in events)
    # References are complete on the last message event, then done.
    assert [data["reference"] for kind, data in events if kind == "message"][-1] == [{"id": "p1"}]
    assert events[-1][0] == "done"


async def test_what_is_left_when_the_run_finishes_goes_in_the_last_frame_with_the_references(monkeypatch):
    async def script(run, gate, frames):
        add(run, "x", "y")
        await finish(run)

    events = await follow(CompletionRun(prepared()), False, monkeypatch, script)
    assert [(kind, data.get("answer"), data.get("reference")) for kind, data in events] == [
        ("message", "xy", [{"id": "p1"}]),
        ("done", None, None),
    ]
