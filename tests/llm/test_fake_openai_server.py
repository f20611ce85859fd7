"""The fake OpenAI server itself: what the other tests and the benchmark rely on.

Driven with the real `openai` SDK (and raw sockets where the SDK hides the
wire), so a drift from OpenAI's format would show here first.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from agents.llm.base import ChatMessage, ChatRequest, LLMError, Usage
from agents.llm.openai_compat import OpenAICompatibleProvider
from combo.errors import ErrorCode
from tests.fakes.openai_server import MODELS, FakeOpenAIServer, answer_tokens

ROOT = Path(__file__).resolve().parents[2]


def test_answers_echo_the_question_then_pad_to_the_token_count() -> None:
    assert answer_tokens("Why?", 5) == ["You", " asked:", " Why?", " tok3", " tok4"]
    assert answer_tokens("a b c d e f", 4) == ["You", " asked:", " a", " b"]


@pytest.mark.asyncio
async def test_it_streams_openai_wire_format_with_usage_and_done() -> None:
    async with FakeOpenAIServer(tokens=3) as server:
        body = json.dumps(
            {
                "model": "fake",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "Hi"}],
            }
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        raw = await reader.read()
        writer.close()

    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Type: text/event-stream" in head
    assert b"Transfer-Encoding: chunked" in head
    events = _unchunk(chunked).decode().split("\n\n")
    assert events[-1] == ""
    assert all(event.startswith("data: ") for event in events[:-1])
    data = [event[len("data: ") :] for event in events[:-1]]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["You", " asked:", " Hi"]
    assert chunks[4]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert all(c["usage"] is None for c in chunks[:5])


def _unchunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]


@pytest.mark.asyncio
async def test_it_answers_non_streaming_requests_and_lists_models() -> None:
    async with FakeOpenAIServer(tokens=4) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        completion = await client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "Ping"}])
        models = await client.models.list()
        await client.close()

    assert completion.choices[0].message.content == "You asked: Ping tok3"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert [model.id for model in models.data] == MODELS


@pytest.mark.asyncio
async def test_it_keeps_connections_alive_between_requests() -> None:
    async with FakeOpenAIServer(tokens=2) as server:
        provider = OpenAICompatibleProvider(server.base_url, "k", timeout=5, transport="httpx")
        for question in ("one", "two", "three"):
            await provider.complete(ChatRequest([ChatMessage("user", question)], "fake"))
        await provider.aclose()
        peers = {r.peer for r in server.requests}

    assert len(server.requests) == 3
    assert len(peers) == 1  # one connection carried all three


@pytest.mark.asyncio
async def test_it_serves_many_concurrent_streams() -> None:
    async with FakeOpenAIServer(tokens=16, interval=0.005) as server:
        provider = OpenAICompatibleProvider(server.base_url, "k", timeout=10)
        results = await asyncio.gather(
            *(provider.complete(ChatRequest([ChatMessage("user", f"n{i}")], "fake")) for i in range(200))
        )
        await provider.aclose()

    assert [text.split()[2] for text, _ in results] == [f"n{i}" for i in range(200)]
    assert all(usage == Usage(prompt_tokens=1, completion_tokens=16) for _, usage in results)


@pytest.mark.asyncio
async def test_stop_ends_hanging_connections() -> None:
    server = FakeOpenAIServer()
    await server.start()
    provider = OpenAICompatibleProvider(server.base_url, "k", timeout=30, transport="httpx")
    pending = asyncio.ensure_future(provider.complete(ChatRequest([ChatMessage("user", "x")], "fake-hang")))
    while not server.requests:
        await asyncio.sleep(0.01)

    await asyncio.wait_for(server.stop(), timeout=5)
    with pytest.raises(LLMError) as caught:
        await asyncio.wait_for(pending, timeout=5)
    assert caught.value.error is ErrorCode.UPSTREAM_UNAVAILABLE
    await provider.aclose()


def test_the_thread_wrapper_serves_sync_callers_and_stops_cleanly() -> None:
    with FakeOpenAIServer(tokens=3) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sync-key", max_retries=0)
        completion = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "Sync?"}])
        client.close()
        thread = server._thread

    assert completion.choices[0].message.content == "You asked: Sync?"
    assert server.requests[0].headers["authorization"] == "Bearer sync-key"
    assert thread is not None and not thread.is_alive()


def test_it_runs_as_a_process_that_prints_ready_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--tokens", "6", "--interval", "0.001"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        word, port = process.stdout.readline().split()
        assert word == "READY"
        provider = OpenAICompatibleProvider(f"http://127.0.0.1:{port}/v1", "k", timeout=5, transport="httpx")
        text, usage = asyncio.run(_complete_and_close(provider, "From a process"))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    assert text == "You asked: From a process tok5"
    assert usage == Usage(prompt_tokens=3, completion_tokens=6)
    assert code == 0


async def _complete_and_close(provider: OpenAICompatibleProvider, question: str) -> tuple[str, Usage | None]:
    try:
        return await provider.complete(ChatRequest([ChatMessage("user", question)], "fake"))
    finally:
        await provider.aclose()
