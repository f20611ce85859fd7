"""A fake OpenAI-compatible HTTP server for tests and benchmarks.

A real server on 127.0.0.1 (pure asyncio, hand-parsed HTTP/1.1 with
keep-alive), so the real `openai` SDK and the real HTTP stack are exercised;
nothing is mocked. It is cheap enough to hold 1,000+ concurrent streams.

Behaviour is chosen by the request's `model`:

    fake (or any unknown name)  "You asked: <last user message>" then padding
                                "tokN" up to `tokens` tokens, `interval` apart
    fake-slow                   the same, `slow_interval` apart
    fake-NNN (e.g. fake-500)    HTTP NNN with an OpenAI-style error body;
                                429 carries Retry-After, 4xx bodies echo the
                                caller's key (a worst case, to prove it never
                                reaches users)
    fake-toolong                HTTP 400 as OpenAI says a prompt is over the
                                model's context window (context_length_exceeded)
    fake-hang                   reads the request, never answers
    fake-stall                  streams a few chunks, then goes silent
    fake-cut                    streams a few chunks, then drops the connection
    fake-truncated              streams a few chunks, then ends the body
                                cleanly without finish_reason or [DONE]
    fake-garbage                streams `data: {not json`
    fake-nousage                streams normally but ignores stream_options
                                (no usage chunk), like some older servers
    fake-nostream               ignores `stream: true`: answers one JSON body
    fake-oddusage               streams normally but reports usage no counter
                                can hold: a string and an integer beyond 64 bits
    fake-reasoning              streams two `reasoning_content` tokens ("Let me",
                                " think."), as vLLM's and DeepSeek's reasoning
                                models do, then the answer; they count against
                                `max_tokens` too
    fake-oddtext                streams normally, but its second token ends
                                in a NUL and a lone UTF-16 surrogate (both
                                valid JSON escapes, neither storable text)

`max_tokens` (or `max_completion_tokens`) caps the answer (finish_reason
"length"). Endpoints: POST /v1/chat/completions (stream true or false) and
GET /v1/models.

Use it as `async with FakeOpenAIServer() as server:` inside a loop, as
`with FakeOpenAIServer() as server:` from sync code (it then runs on its own
loop in a background thread), or as a process:

    python -m tests.fakes.openai_server --port 0 --tokens 64 --interval 0.02

which prints `READY <port>` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

MODELS = [
    "fake",
    "fake-slow",
    "fake-toolong",
    "fake-hang",
    "fake-stall",
    "fake-cut",
    "fake-truncated",
    "fake-garbage",
    "fake-nousage",
    "fake-nostream",
    "fake-oddusage",
    "fake-oddtext",
    "fake-reasoning",
    "fake-500",
    "fake-429",
    "fake-401",
]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: keep-alive\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"
_PARTIAL_CHUNKS = 3  # how many content chunks the faulty streams send first


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any = None  # the parsed JSON body, if any
    peer: str = ""  # the client's "host:port": one per connection

    @property
    def messages(self) -> list[dict]:
        return list((self.body or {}).get("messages") or [])


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(data: bytes) -> bytes:
    """One SSE event, framed as one HTTP chunk (as OpenAI sends them)."""
    return _chunk(b"data: " + data + b"\n\n")


# What fake-oddtext appends to its second token.
ODD_TEXT = "\x00\ud800"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def answer_tokens(question: str, count: int) -> list[str]:
    """The deterministic answer: the question echoed, padded to `count` tokens."""
    words = f"You asked: {question}".split() if question else ["You", "asked", "nothing."]
    tokens = [word if i == 0 else " " + word for i, word in enumerate(words)]
    tokens.extend(f" tok{i}" for i in range(len(tokens), count))
    return tokens[:count]


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return " ".join(content.split())
            if isinstance(content, list):  # content parts
                return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict)).strip()
    return ""


def _prompt_tokens(messages: list[dict]) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
    return total


class FakeOpenAIServer:
    """See the module docstring. `requests` lists what was received, in order."""

    def __init__(
        self,
        tokens: int = 8,
        interval: float = 0.0,
        *,
        slow_interval: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.tokens = tokens
        self.ssl_context = ssl_context  # serve HTTPS with it (tests of the https upstream path)
        self.interval = interval
        self.slow_interval = slow_interval
        self.host = host
        self.port = port
        self.record = record
        self.requests: list[RecordedRequest] = []
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counter = 0

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/v1"

    # -- lifecycle (in the current loop) -------------------------------------

    async def start(self) -> int:
        # A deep backlog: benchmarks open hundreds of connections at once.
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, backlog=4096, limit=1 << 20, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Python 3.11's wait_closed() does not wait for open connections
        # (hanging ones would live on): end every handler explicitly.
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- lifecycle (own loop in a background thread, for sync code) ----------

    def run_in_thread(self) -> FakeOpenAIServer:
        """Start serving on a private event loop in a daemon thread; returns self.

        The server's loop is not the caller's: clients may use any loop (or
        many, one after the other) to talk to it.
        """
        if self._thread is not None:
            raise RuntimeError("already running in a thread")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fake-openai-server-{id(self):x}", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        return self

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.run_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # -- HTTP ------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else ""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                try:
                    method, target, _version = lines[0].split(" ", 2)
                except ValueError:
                    await self._send_json(writer, 400, {"error": {"message": "bad request line"}})
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                keep_open = await self._dispatch(reader, writer, method, target.split("?", 1)[0], headers, raw, peer)
                if not keep_open or headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away
        except asyncio.CancelledError:
            return  # stop(): the server is shutting down
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _dispatch(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        peer: str,
    ) -> bool:
        """Answer one request; False when the connection must not be reused."""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                if self.record:
                    self.requests.append(RecordedRequest(method, path, headers, raw.decode("utf-8", "replace"), peer))
                return await self._send_error(writer, 400, "The request body is not valid JSON.", "invalid_json")
        if self.record:
            self.requests.append(RecordedRequest(method, path, headers, body, peer))

        if path.endswith("/models"):
            if method != "GET":
                return await self._send_error(writer, 405, "Use GET.", "method_not_allowed")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "combo-tests"} for m in MODELS]
            return await self._send_json(writer, 200, {"object": "list", "data": data})
        if not path.endswith("/chat/completions"):
            return await self._send_error(writer, 404, f"Unknown path {path}.", "not_found")
        if method != "POST":
            return await self._send_error(writer, 405, "Use POST.", "method_not_allowed")
        if not isinstance(body, dict):
            return await self._send_error(writer, 400, "Expected a JSON object.", "invalid_request")
        return await self._chat(reader, writer, headers, body)

    async def _chat(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        body: dict,
    ) -> bool:
        model = str(body.get("model") or "fake")
        suffix = model[5:] if model.startswith("fake-") else ""
        if suffix.isdigit() and len(suffix) == 3:
            return await self._fake_status(writer, int(suffix), headers)
        if model == "fake-toolong":
            return await self._send_error(
                writer, 400, "This model's maximum context length is 128 tokens. However, your messages resulted in "
                f"{_prompt_tokens(body.get('messages') or []) + 128} tokens. Please reduce the length of the messages.",
                "context_length_exceeded",
            )
        if model == "fake-hang":
            await reader.read()  # until the client gives up (or stop() cancels us)
            return False

        raw_messages = body.get("messages")
        messages: list[dict] = raw_messages if isinstance(raw_messages, list) else []
        limit = self.tokens
        for key in ("max_completion_tokens", "max_tokens"):
            if isinstance(body.get(key), int) and body[key] >= 0:
                limit = min(limit, body[key])
        reasoning = ["Let me", " think."][:limit] if model == "fake-reasoning" else []
        tokens = answer_tokens(_last_user_text(messages), limit - len(reasoning))
        if model == "fake-oddtext" and len(tokens) > 1:
            tokens[1] += ODD_TEXT
        finish = "length" if limit < self.tokens else "stop"
        prompt_tokens = _prompt_tokens(messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reasoning) + len(tokens),
            "total_tokens": prompt_tokens + len(reasoning) + len(tokens),
        }
        if model == "fake-oddusage":
            usage = {"prompt_tokens": str(prompt_tokens), "completion_tokens": 2**70, "total_tokens": -1}
        self._counter += 1
        completion_id = f"chatcmpl-fake{self._counter:08d}"
        created = int(time.time())

        if not body.get("stream") or model == "fake-nostream":
            return await self._send_json(
                writer,
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant", "content": "".join(tokens), "refusal": None,
                                **({"reasoning_content": "".join(reasoning)} if reasoning else {}),
                            },
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                },
            )

        include_usage = model != "fake-nousage" and bool((body.get("stream_options") or {}).get("include_usage"))
        interval = self.slow_interval if model == "fake-slow" else self.interval
        return await self._stream(
            reader, writer, model, completion_id, created, tokens, finish, usage if include_usage else None, interval,
            reasoning,
        )

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        model: str,
        completion_id: str,
        created: int,
        tokens: list[str],
        finish: str,
        usage: dict | None,
        interval: float,
        reasoning: list[str] | None = None,
    ) -> bool:
        # Every chunk shares this envelope; only the choices differ. Built once
        # per stream so the per-token cost is one small json.dumps.
        usage_field = b',"usage":null' if usage is not None else b""
        head = (
            b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"system_fingerprint":null,"choices":[{"index":0,"delta":'
        ) % (completion_id.encode(), created, _dumps(model))
        tail = b',"logprobs":null,"finish_reason":null}]' + usage_field + b"}"

        def delta_event(delta: bytes) -> bytes:
            return _event(head + delta + tail)

        writer.write(_SSE_HEAD + delta_event(b'{"role":"assistant","content":"","refusal":null}'))
        for thought in reasoning or ():
            writer.write(delta_event(b'{"content":null,"reasoning_content":%s}' % _dumps(thought)))
        faulty = model in ("fake-stall", "fake-cut", "fake-truncated", "fake-garbage")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, token in enumerate(tokens):
            if faulty and index == _PARTIAL_CHUNKS:
                break
            if interval and index:
                # Paced against the start, not the previous token, so that a
                # busy loop does not stretch every answer (benchmarks measure
                # the client, not this server's drift).
                await asyncio.sleep(max(0.0, started + index * interval - loop.time()))
            writer.write(delta_event(b'{"content":%s}' % _dumps(token)))
            await writer.drain()

        if model == "fake-garbage":
            writer.write(_event(b"{not json") + _event(b"[DONE]") + _LAST_CHUNK)
            await writer.drain()
            return True
        if model == "fake-stall":
            await writer.drain()
            await reader.read()  # silent until the client gives up
            return False
        if model == "fake-cut":
            await writer.drain()
            writer.transport.abort()  # no final chunk, no [DONE]: a broken body
            return False
        if model == "fake-truncated":
            writer.write(_LAST_CHUNK)  # a well-formed body that just stops
            await writer.drain()
            return True

        final = (
            b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"system_fingerprint":null,"choices":[{"index":0,"delta":{},"logprobs":null,'
            b'"finish_reason":"%s"}]%s}'
        ) % (completion_id.encode(), created, _dumps(model), finish.encode(), usage_field)
        out = _event(final)
        if usage is not None:
            out += _event(
                b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
                b'"system_fingerprint":null,"choices":[],"usage":%s}'
                % (completion_id.encode(), created, _dumps(model), _dumps(usage))
            )
        writer.write(out + _event(b"[DONE]") + _LAST_CHUNK)
        await writer.drain()
        return True

    async def _fake_status(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        key = auth[7:] if auth.lower().startswith("bearer ") else auth
        extra: dict[str, str] = {}
        if status == 429:
            extra = {"Retry-After": "1", "x-ratelimit-remaining-requests": "0"}
            message, code = "Rate limit reached for requests. Please try again in 1s.", "rate_limit_exceeded"
        elif status in (401, 403):
            # A careless server echoing the whole key (OpenAI masks most of it).
            message, code = f"Incorrect API key provided: {key}.", "invalid_api_key"
        elif status < 500:
            message, code = f"Invalid request for key {key}: this model cannot do that.", "invalid_request"
        else:
            message, code = "The server had an error while processing your request.", "server_error"
        return await self._send_error(writer, status, message, code, extra)

    async def _send_error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        code: str,
        extra_headers: dict[str, str] | None = None,
    ) -> bool:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return await self._send_json(writer, status, payload, extra_headers)

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra_headers: dict[str, str] | None = None,
    ) -> bool:
        data = _dumps(payload)
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            "Connection: keep-alive",
        ]
        head.extend(f"{name}: {value}" for name, value in (extra_headers or {}).items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()
        return True


async def _serve(args: argparse.Namespace) -> None:
    server = FakeOpenAIServer(
        tokens=args.tokens,
        interval=args.interval,
        slow_interval=args.slow_interval,
        host=args.host,
        port=args.port,
        record=False,  # a benchmark would otherwise grow this list without bound
    )
    port = await server.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    print(f"READY {port}", flush=True)
    await done.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--tokens", type=int, default=8, help="tokens per answer")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--slow-interval", type=float, default=0.05, help="seconds between tokens for fake-slow")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
