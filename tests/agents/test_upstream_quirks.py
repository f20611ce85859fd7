"""What real OpenAI-compatible servers send, byte for byte, read alike on the lean and the SDK's path.

Each response is written by a raw-socket server (tests.agents.test_openai_wire.ScriptedServer),
a byte at a time, so every quirk is also split across network reads.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket

import pytest

from agents.llm.base import LLMError, Usage
from agents.llm.openai_compat import OpenAICompatibleProvider
from tests.agents.test_openai_wire import REQUEST, SSE_HEAD, ScriptedServer, chunked

TRANSPORTS = ["lean", "httpx"]


def chunk(content=None, finish=None, **delta_extra) -> dict:
    delta = dict(delta_extra)
    if content is not None or "content" in delta_extra:
        delta.setdefault("content", content)
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta,
                                                                        "finish_reason": finish}]}


def sse(*events: object, sep: bytes = b"\n", space: bool = True, done: bool = True) -> bytes:
    prefix = b"data: " if space else b"data:"
    out = b""
    for event in events:
        raw = event if isinstance(event, bytes) else json.dumps(event, ensure_ascii=False).encode()
        out += prefix + raw + sep + sep
    if done:
        out += prefix + b"[DONE]" + sep + sep
    return out


def streamed(body: bytes, framing: str = "chunked") -> bytes:
    if framing == "chunked":
        return SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 64)
    if framing == "length":
        return SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    return SSE_HEAD + b"Connection: close\r\n\r\n" + body


async def run(response: bytes, transport: str):
    async with ScriptedServer([response], close_after=1) as server:
        provider = OpenAICompatibleProvider(server.url, "sk-test-key-123", timeout=5, transport=transport)
        pieces, usage = [], None
        try:
            async for piece in provider.stream(REQUEST):
                if isinstance(piece, Usage):
                    usage = piece
                else:
                    pieces.append(piece)
        except LLMError as exc:
            return ("error", exc.error.code, "".join(pieces), exc.message)
        finally:
            await provider.aclose()
    return ("ok", "".join(pieces), usage)


USAGE_ONLY = {"id": "c", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
ROLE = {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "body, framing",
    [
        (sse(ROLE, chunk("Hé"), chunk(" là"), chunk(finish="stop"), USAGE_ONLY), "chunked"),
        (sse(ROLE, chunk("Hé"), chunk(" là"), chunk(finish="stop"), USAGE_ONLY, space=False), "chunked"),
        (sse(ROLE, chunk("Hé"), chunk(" là"), chunk(finish="stop"), USAGE_ONLY, sep=b"\r\n"), "length"),
        (sse(ROLE, chunk("Hé"), chunk(" là"), chunk(finish="stop"), USAGE_ONLY, sep=b"\r"), "chunked"),
        (b": ping\n\nevent: message\nid: 1\nretry: 3000\n" + sse(ROLE, chunk("Hé"), chunk(" là"), done=False)
         .replace(b"\n\ndata:", b"\n\n: ping - 2026\nevent: delta\nid: 2\ndata:") + sse(chunk(finish="stop"), USAGE_ONLY),
         "close"),
        (sse(ROLE, chunk(None), chunk("Hé"), chunk(" là", reasoning_content=None),
             {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 4, "completion_tokens": 2}}), "close"),
        # Azure's first chunk: no choices, only prompt_filter_results.
        (sse({"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}, ROLE, chunk("Hé"),
             chunk(" là", finish="stop"), USAGE_ONLY), "chunked"),
        # The last line without its blank line, then the connection closes.
        (sse(ROLE, chunk("Hé"), chunk(" là"), chunk(finish="stop"), USAGE_ONLY)[:-2], "close"),
    ],
    ids=["plain", "no-space", "crlf", "cr", "comments-and-fields", "null-content-and-usage-on-last",
         "azure-filter-results-and-content-with-finish", "no-final-blank-line"],
)
async def test_stream_shapes_real_servers_send(body, framing, transport):
    assert await run(streamed(body, framing), transport) == ("ok", "Hé là", Usage(4, 2))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_gzip_multi_byte_text_split_across_reads_and_a_line_over_64_kib(transport):
    long = "é" * 50000 + "😀" * 10000  # 140 KB in one event line, multi-byte throughout
    body = sse(chunk(long), chunk(finish="stop"), USAGE_ONLY)
    response = SSE_HEAD + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(
        gzip.compress(body), 1000)
    assert await run(response, transport) == ("ok", long, Usage(4, 2))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
async def test_a_finished_answer_without_done_is_whole_and_one_without_finish_reason_is_not(framing, transport):
    # Older llama.cpp servers end the body after the finish_reason, without [DONE].
    finished = sse(chunk("a"), chunk(finish="stop"), done=False)
    assert await run(streamed(finished, framing), transport) == ("ok", "a", None)
    cut = sse(chunk("a"), done=False)
    assert (await run(streamed(cut, framing), transport))[:3] == ("error", 30006, "a")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_error_object_inside_a_200_stream_is_the_upstreams_error_not_text(transport):
    # vLLM and llama.cpp report a failure mid-generation this way.
    body = sse(chunk("a"), {"error": {"message": "CUDA out of memory", "type": "server_error", "code": 500}})
    result = await run(streamed(body), transport)
    assert result[:3] == ("error", 30001, "a")
    assert 'reported an error mid-answer: "CUDA out of memory"' in result[3]


def refusal(status: int, payload: object) -> bytes:
    raw = json.dumps(payload).encode()
    return (b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (status, len(raw)) + raw)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "payload",
    [
        {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 "
                              "tokens (key sk-test-key-123). Please reduce the length of the messages.",
                   "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
        {"object": "error", "message": "This model's maximum context length is 2048 tokens. However, you "
                                       "requested 3000 tokens (2900 in the messages, 100 in the completion).",
         "type": "BadRequestError", "param": None, "code": 400},
        {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                   "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}},
    ],
    ids=["openai", "vllm", "llama.cpp"],
)
async def test_a_prompt_over_the_context_window_says_what_to_do(payload, transport):
    result = await run(refusal(400, payload), transport)
    assert result[:3] == ("error", 30001, "")
    message = result[3]
    assert "HTTP 400" in message and "context" in message  # the upstream's own words are kept
    # What a user can do, and what an operator can change.
    assert "shorter question" in message and "new session" in message
    assert "COMBO_PROMPT_HISTORY_CHARS" in message and "COMBO_RETRIEVAL_TOP_K" in message
    assert "sk-test-key-123" not in message
    assert len(message) <= 500  # kept whole on the session's message


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "text",
    [
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens "
        "and 512 `max_new_tokens`",
        "Input validation error: `inputs` must have less than 4096 tokens. Given: 5000",
    ],
    ids=["total", "inputs"],
)
async def test_tgis_422_for_a_prompt_over_the_context_window_says_what_to_do_too(text, transport):
    # Hugging Face TGI validates the prompt's length itself and answers 422.
    result = await run(refusal(422, {"error": text, "error_type": "validation"}), transport)
    assert result[:3] == ("error", 30001, "")
    message = result[3]
    assert "HTTP 422" in message and "`inputs`" in message
    assert "shorter question" in message and "COMBO_PROMPT_HISTORY_CHARS" in message
    assert len(message) <= 500
    # The same refusal as an error event after a 200 head.
    result = await run(streamed(sse({"error": text, "error_type": "validation"})), transport)
    assert result[:3] == ("error", 30001, "") and "shorter question" in result[3], result


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_422_for_anything_else_is_the_upstreams_refusal_as_a_400_is(transport):
    text = "Input validation error: `temperature` must be strictly positive"
    for status in (400, 422):
        result = await run(refusal(status, {"error": text, "error_type": "validation"}), transport)
        assert result[:3] == ("error", 30001, "")
        assert f"HTTP {status}" in result[3] and "`temperature` must be strictly positive" in result[3]
        assert "request limits of the provider" in result[3] and "shorter question" not in result[3]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "payload",
    [
        {"error": {"message": "The model `hi-model` does not exist or you do not have access to it.",
                   "type": "invalid_request_error", "param": None, "code": "model_not_found"}},
        {"error": {"message": "model \"hi-model\" not found, try pulling it first", "type": "api_error"}},
        {"detail": "Not Found"},
        {"error": {"message": "model 'fake' not found; " + "the models served here are ... " * 20}},
    ],
    ids=["openai", "ollama", "no-detail", "long"],
)
async def test_a_404_names_the_model_that_was_asked_for(payload, transport):
    result = await run(refusal(404, payload), transport)
    assert result[:3] == ("error", 30001, "")
    assert "model 'fake'" in result[3] and "COMBO_LLM_MODEL" in result[3] and "/v1" in result[3]
    assert len(result[3]) <= 500


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_reason_the_model_stopped_is_passed_on(transport):
    # Cut by max tokens, with and without usage; and a whole (non-stream) body cut the same way.
    cut = await run(streamed(sse(chunk("a"), chunk(finish="length"), USAGE_ONLY)), transport)
    assert cut == ("ok", "a", Usage(4, 2)) and cut[2].finish_reason == "length"
    cut = await run(streamed(sse(chunk("a"), chunk(finish="length"))), transport)
    assert cut == ("ok", "a", Usage(None, None)) and cut[2].finish_reason == "length"
    whole = json.dumps({"choices": [{"message": {"content": "a"}, "finish_reason": "length"}]}).encode()
    cut = await run(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(whole) + whole, transport)
    assert cut == ("ok", "a", Usage(None, None)) and cut[2].finish_reason == "length"
    # A natural end: usage (when reported) says "stop"; nothing more is yielded when there is none.
    ended = await run(streamed(sse(chunk("a"), chunk(finish="stop"), USAGE_ONLY)), transport)
    assert ended[2].finish_reason == "stop"
    assert await run(streamed(sse(chunk("a"), chunk(finish="stop"))), transport) == ("ok", "a", None)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reasoning_is_not_the_answer_and_reasoning_without_an_answer_is_no_success(transport):
    # DeepSeek and vLLM's reasoning parsers say `reasoning_content`, Ollama and newer vLLM `reasoning`.
    body = sse(ROLE, chunk(None, reasoning_content="Hm, "), chunk(None, reasoning="let me see."), chunk("Yes."),
               chunk(finish="stop"))
    assert await run(streamed(body), transport) == ("ok", "Yes.", None)
    whole = json.dumps({"choices": [{"message": {"content": "Yes.", "reasoning_content": "Hm."},
                                     "finish_reason": "stop"}]}).encode()
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(whole)
                + whole)
    assert await run(response, transport) == ("ok", "Yes.", None)
    # All the tokens went to reasoning: not an empty success.
    for finish, says in (("length", "max tokens"), ("stop", "reasoning parser")):
        body = sse(ROLE, chunk(None, reasoning_content="Hm, "), chunk(None, reasoning_content="still"),
                   chunk(finish=finish))
        result = await run(streamed(body), transport)
        assert result[:3] == ("error", 30006, ""), result
        assert "reasoning" in result[3] and "no answer" in result[3] and says in result[3]
        whole = json.dumps({"choices": [{"message": {"content": None, "reasoning": "Hm."},
                                         "finish_reason": finish}]}).encode()
        response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(whole) + whole)
        assert (await run(response, transport))[:3] == ("error", 30006, "")
    # An empty answer without reasoning is what the model said.
    assert await run(streamed(sse(ROLE, chunk(""), chunk(finish="stop"))), transport) == ("ok", "", None)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_prompt_over_the_context_window_reported_inside_a_200_stream_says_what_to_do_too(transport):
    # llama.cpp and vLLM may send their refusal as an error event after a 200 head.
    for error in ({"error": {"code": 400, "message": "the request exceeds the available context size, try "
                             "increasing it", "type": "exceed_context_size_error"}},
                  {"object": "error", "message": "This model's maximum context length is 2048 tokens.",
                   "type": "BadRequestError", "code": 400}):
        result = await run(streamed(sse(error)), transport)
        assert result[:3] == ("error", 30001, "")
        assert "shorter question" in result[3] and "COMBO_PROMPT_HISTORY_CHARS" in result[3], result[3]
        assert len(result[3]) <= 500


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_done_without_a_finish_reason_is_a_whole_answer(transport):
    # Some servers and gateways never set finish_reason; [DONE] is their end of the answer.
    assert await run(streamed(sse(ROLE, chunk("a"), chunk("b"))), transport) == ("ok", "ab", None)
    assert await run(streamed(sse(chunk("a"), USAGE_ONLY)), transport) == ("ok", "a", Usage(4, 2))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("content_type", [b"Text/Event-Stream", b"text/plain; charset=utf-8", None])
async def test_events_under_another_content_type_are_read_as_events(content_type, transport):
    body = b": hello\n\n" + sse(chunk("a"), chunk("b"), chunk(finish="stop"), USAGE_ONLY)
    head = b"HTTP/1.1 200 OK\r\n" + (b"Content-Type: " + content_type + b"\r\n" if content_type else b"")
    for framing in (b"Content-Length: %d\r\n\r\n" % len(body) + body,
                    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 10)):
        assert await run(head + framing, transport) == ("ok", "ab", Usage(4, 2))
    # Cut short is cut short however it is labelled.
    body = sse(chunk("a"), done=False)
    assert (await run(head + b"Content-Length: %d\r\n\r\n" % len(body) + body, transport))[:3] == ("error", 30006, "a")


class PausedServer(ScriptedServer):
    """Writes one response in the given pieces, each flushed then held back a moment: one network read each."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def handle(self, reader, writer):
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")][0])
            await reader.readexactly(length)
            for piece in self.pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.05)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("framing", ["chunked", "close"])
@pytest.mark.parametrize("text", ["é", "€", "😀"], ids=["2-byte", "3-byte", "4-byte"])
async def test_a_character_split_between_two_network_reads_arrives_whole(text, framing, transport):
    body = sse(chunk("a" + text + "b"), chunk(finish="stop"))
    if framing == "chunked":
        response = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, len(body))
    else:
        response = SSE_HEAD + b"Connection: close\r\n\r\n" + body
    encoded = text.encode()
    at = response.index(encoded)
    for cut in range(1, len(encoded)):  # after each byte inside the character
        pieces = [response[:at + cut], response[at + cut:]]
        async with PausedServer(pieces) as server:
            provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport=transport)
            try:
                got = [piece async for piece in provider.stream(REQUEST)]
            finally:
                await provider.aclose()
        assert got == ["a" + text + "b"], (cut, got)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_invalid_utf8_in_the_text_is_replaced_and_the_answer_still_arrives(transport):
    # A server that cut a character in two (or sent Latin-1): U+FFFD stands for
    # each bad byte, as the SSE standard's UTF-8 decoding and httpx's text do.
    bad = b'{"choices":[{"index":0,"delta":{"content":"caf\xe9 \xf0\x9f ok"},"finish_reason":null}]}'
    body = sse(chunk("1 "), bad, chunk(finish="stop"), USAGE_ONLY)
    assert await run(streamed(body), transport) == ("ok", "1 caf\ufffd \ufffd ok", Usage(4, 2))
    # The same in a whole (non-stream) answer.
    whole = b'{"choices":[{"message":{"content":"caf\xe9"},"finish_reason":"stop"}]}'
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(whole) + whole
    assert await run(response, transport) == ("ok", "caf\ufffd", None)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_event_that_is_not_json_even_with_bad_bytes_replaced_is_a_malformed_answer(transport):
    bad = b'{"choices":[{"index":0,"delta":{"content":"x"}\xff]}'
    result = await run(streamed(sse(chunk("a"), bad, chunk(finish="stop"))), transport)
    assert result[:3] == ("error", 30006, "a")
    assert "malformed answer" in result[3]
