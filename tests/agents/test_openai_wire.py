"""The OpenAI-compatible provider over real sockets: the lean wire path and the SDK's path agree.

The fake upstream is a real HTTP server; the hand-written servers below send
responses byte by byte, in the shapes HTTP/1.1 allows, to the lean client.
"""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from agents.llm.base import ChatMessage, ChatRequest, LLMError, Usage
from agents.llm.openai_compat import OpenAICompatibleProvider
from combo.errors import ErrorCode
from tests.fakes.openai_server import FakeOpenAIServer, answer_tokens

REQUEST = ChatRequest(messages=[ChatMessage("user", "hi there")], model="fake")


async def outcome(provider, model="fake"):
    pieces, usage = [], None
    try:
        async for piece in provider.stream(ChatRequest(messages=REQUEST.messages, model=model)):
            if isinstance(piece, Usage):
                usage = piece
            else:
                pieces.append(piece)
    except LLMError as exc:
        return ("error", exc.error.code, exc.retryable, "".join(pieces))
    return ("ok", "".join(pieces), usage)


@pytest.mark.parametrize(
    "model",
    ["fake", "fake-slow", "fake-500", "fake-429", "fake-401", "fake-404", "fake-hang", "fake-stall", "fake-cut",
     "fake-truncated", "fake-garbage"],
)
async def test_the_lean_path_and_the_sdk_path_give_the_same_outcome(model):
    async with FakeOpenAIServer(tokens=5, slow_interval=0.02) as server:
        results = {}
        for transport in ("lean", "httpx"):
            provider = OpenAICompatibleProvider(server.base_url, "sk-secret-key-123", timeout=1, transport=transport)
            try:
                results[transport] = await outcome(provider, model)
            finally:
                await provider.aclose()
        sent = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert results["lean"] == results["httpx"]
    if model in ("fake", "fake-slow"):
        assert results["lean"] == ("ok", "".join(answer_tokens("hi there", 5)), Usage(2, 5))
    # What goes upstream is what the SDK sends: its headers, its key, the same body.
    lean, sdk = sent[0], sent[-1]
    assert lean.body == sdk.body
    assert lean.headers["authorization"] == sdk.headers["authorization"] == "Bearer sk-secret-key-123"
    assert lean.headers["user-agent"] == sdk.headers["user-agent"]


async def test_a_429_carries_retry_after_and_no_secret_on_either_path():
    async with FakeOpenAIServer() as server:
        for transport in ("lean", "httpx"):
            provider = OpenAICompatibleProvider(server.base_url, "sk-secret-key-123", timeout=2, transport=transport)
            with pytest.raises(LLMError) as caught:
                async for _ in provider.stream(ChatRequest(messages=REQUEST.messages, model="fake-401")):
                    pass
            assert "sk-secret-key-123" not in caught.value.message
            with pytest.raises(LLMError) as caught:
                async for _ in provider.stream(ChatRequest(messages=REQUEST.messages, model="fake-429")):
                    pass
            assert caught.value.retry_after == 1.0
            await provider.aclose()


async def test_connections_are_reused_across_answers():
    async with FakeOpenAIServer(tokens=3) as server:
        provider = OpenAICompatibleProvider(server.base_url, "k", timeout=2, transport="lean")
        for _ in range(5):
            assert (await outcome(provider))[0] == "ok"
        assert len(server._handlers) == 1  # one keep-alive connection served all five
        await provider.aclose()


async def test_unreachable_and_unresolvable_upstreams_say_so():
    refused = OpenAICompatibleProvider("http://127.0.0.1:1/v1", "k", timeout=2, transport="lean")
    assert (await outcome(refused))[:2] == ("error", ErrorCode.UPSTREAM_UNAVAILABLE.code)
    unknown = OpenAICompatibleProvider("http://no-such-host.invalid/v1", "k", timeout=2, transport="lean")
    with pytest.raises(LLMError) as caught:
        async for _ in unknown.stream(REQUEST):
            pass
    assert caught.value.error == ErrorCode.UPSTREAM_UNAVAILABLE and "host name" in caught.value.message


def test_base_urls_the_lean_client_does_not_handle_go_through_the_sdk(monkeypatch):
    assert OpenAICompatibleProvider("http://127.0.0.1:9/v1", "k").transport == "lean"
    assert OpenAICompatibleProvider("https://api.openai.com/v1", "k").transport == "lean"
    assert OpenAICompatibleProvider("http://127.0.0.1:9/v1?api-version=1", "k").transport == "httpx"
    assert OpenAICompatibleProvider("http://user:pw@127.0.0.1:9/v1", "k").transport == "httpx"
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert OpenAICompatibleProvider("http://llm.example/v1", "k").transport == "httpx"
    with pytest.raises(ValueError):
        OpenAICompatibleProvider("http://llm.example/v1", "k", transport="lean")


# --- responses in every shape HTTP/1.1 allows, a byte at a time ------------------------------------------

def events(*contents: str, finish: bool = True, usage: bool = True) -> bytes:
    out = b""
    for content in contents:
        out += b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}).encode() + b"\n\n"
    if finish:
        out += b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n'
    if usage:
        out += b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\n'
    return out + b"data: [DONE]\n\n"


def chunked(body: bytes, size: int = 7) -> bytes:
    out = b""
    for start in range(0, len(body), size):
        piece = body[start:start + size]
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


class ScriptedServer:
    """Answers each request on a connection with the next scripted response, written a byte at a time."""

    def __init__(self, responses: list[bytes], close_after: int | None = None) -> None:
        self.responses = list(responses)
        self.close_after = close_after  # close each connection after this many answers
        self.connections = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def handle(self, reader, writer):
        self.connections += 1
        answered = 0
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")][0])
                await reader.readexactly(length)
                response = self.responses.pop(0)
                for index in range(len(response)):
                    writer.write(response[index:index + 1])
                    if index % 16 == 0:
                        await writer.drain()
                await writer.drain()
                answered += 1
                if self.close_after and answered >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@pytest.mark.parametrize(
    "response",
    [
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(events("You", " said", " hi")),
        b"HTTP/1.1 100 Continue\r\n\r\n" + SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunked(events("You", " said", " hi"), size=1),
        SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(events("You", " said", " hi")) + events("You", " said", " hi"),
        SSE_HEAD + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(gzip.compress(events("You", " said", " hi")), size=5),
    ],
    ids=["chunked", "100-continue-and-1-byte-chunks", "content-length", "gzip"],
)
async def test_the_lean_client_reads_every_framing_and_reuses_the_connection(response):
    async with ScriptedServer([response, response]) as server:
        provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport="lean")
        assert await outcome(provider) == ("ok", "You said hi", Usage(2, 3))
        assert await outcome(provider) == ("ok", "You said hi", Usage(2, 3))
        assert server.connections == 1
        await provider.aclose()


async def test_a_body_that_ends_with_the_connection_is_read_to_its_end():
    response = SSE_HEAD + b"Connection: close\r\n\r\n" + events("You", " said", " hi")
    async with ScriptedServer([response, response], close_after=1) as server:
        provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport="lean")
        assert await outcome(provider) == ("ok", "You said hi", Usage(2, 3))
        assert await outcome(provider) == ("ok", "You said hi", Usage(2, 3))
        assert server.connections == 2
        await provider.aclose()


async def test_a_keep_alive_connection_the_server_dropped_is_replaced():
    response = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(events("ok"))
    async with ScriptedServer([response, response], close_after=1) as server:
        provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport="lean")
        assert (await outcome(provider))[0] == "ok"
        await asyncio.sleep(0.05)  # the server has closed the pooled connection by now
        assert (await outcome(provider))[0] == "ok"
        assert server.connections == 2
        await provider.aclose()


@pytest.mark.parametrize(
    "response, code",
    [
        (SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", ErrorCode.UPSTREAM_BAD_RESPONSE),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{nope",
         ErrorCode.UPSTREAM_BAD_RESPONSE),
        (b"SMTP ready\r\n\r\n", ErrorCode.UPSTREAM_BAD_RESPONSE),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno", ErrorCode.UPSTREAM_ERROR),
        (SSE_HEAD + b"Content-Length: 10000\r\n\r\n" + events("cut", finish=False, usage=False)[:-12],
         ErrorCode.UPSTREAM_BAD_RESPONSE),
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 6000\r\n\r\n"
         + b"[" * 3000 + b"]" * 3000, ErrorCode.UPSTREAM_ERROR),
        (SSE_HEAD + b"Content-Length: 3008\r\n\r\ndata: " + b"[" * 3000 + b"\n\n", ErrorCode.UPSTREAM_BAD_RESPONSE),
    ],
    ids=["bad-chunk-size", "bad-json", "not-http", "503", "cut-inside-a-sized-body", "500-nested-too-deeply",
         "event-nested-too-deeply"],
)
async def test_malformed_answers_map_to_upstream_errors(response, code):
    async with ScriptedServer([response], close_after=1) as server:
        provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport="lean")
        result = await outcome(provider)
        assert result[:2] == ("error", code.code), result
        await provider.aclose()


def event_stream(*events: object) -> bytes:
    body = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events) + b"data: [DONE]\n\n"
    return SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 64)


def delta(content: object) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": content}}]}


STOP = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
WHOLE_ERROR = json.dumps({"error": {"message": "The model `gpt-x` does not exist"}}).encode()


@pytest.mark.parametrize("transport", ["lean", "httpx"])
@pytest.mark.parametrize(
    "response, expected, says",
    [
        # Content as a list of parts, as some servers send it: the text parts are the answer.
        (event_stream(delta("a"), delta([{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "b"}]),
                      STOP), ("ok", "ab", None), None),
        # Content that is not text: a malformed answer, and what came before it is kept.
        (event_stream(delta("a"), delta(5), STOP), ("error", 30006, True, "a"), "malformed"),
        (event_stream(delta("a"), delta({"text": "b"}), STOP), ("error", 30006, True, "a"), "malformed"),
        # vLLM's error object mid-stream: the upstream's own words, not "malformed" (and a prompt
        # too long for the model is no better the second time).
        (event_stream(delta("a"), {"object": "error", "message": "maximum context length is 4096 tokens",
                                   "type": "BadRequestError", "code": 400}),
         ("error", 30001, False, "a"), "maximum context length is 4096 tokens"),
        (event_stream(delta("a"), {"object": "error", "message": "CUDA out of memory", "code": 500}),
         ("error", 30001, True, "a"), "CUDA out of memory"),
        # An error body with 200 where a stream was asked for.
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(WHOLE_ERROR)
         + WHOLE_ERROR, ("error", 30001, True, ""), "does not exist"),
    ],
    ids=["text-parts", "number", "object", "vllm-context-error-object", "vllm-error-object", "error-body-with-200"],
)
async def test_odd_answers_are_read_or_refused_alike_on_both_paths(response, expected, says, transport):
    async with ScriptedServer([response], close_after=1) as server:
        provider = OpenAICompatibleProvider(server.url, "sk-test-key-123", timeout=5, transport=transport)
        try:
            pieces = []
            async for piece in provider.stream(REQUEST):
                assert isinstance(piece, (str, Usage))
                if isinstance(piece, str):
                    pieces.append(piece)
            result = ("ok", "".join(pieces), None)
        except LLMError as exc:
            result = ("error", exc.error.code, exc.retryable, "".join(pieces))
            assert says in exc.message
        finally:
            await provider.aclose()
    assert result == expected


@pytest.mark.parametrize("transport", ["lean", "httpx"])
async def test_a_redirect_is_not_followed_and_says_where_it_pointed(transport):
    response = (b"HTTP/1.1 308 Permanent Redirect\r\nContent-Length: 0\r\n"
                b"Location: https://user:secret@llm.example.com:8443/v1/chat/completions?token=abc\r\n\r\n")
    async with ScriptedServer([response], close_after=1) as server:
        provider = OpenAICompatibleProvider(server.url, "sk-test-key-123", timeout=5, transport=transport)
        try:
            with pytest.raises(LLMError) as caught:
                async for _ in provider.stream(REQUEST):
                    pass
        finally:
            await provider.aclose()
    error = caught.value
    assert (error.error, error.retryable) == (ErrorCode.UPSTREAM_ERROR, False)
    assert "redirected the request (HTTP 308, to https://llm.example.com:8443)" in error.message
    assert "COMBO_LLM_BASE_URL" in error.message
    assert "secret" not in error.message and "token" not in error.message


async def test_a_whole_answer_for_a_server_that_ignores_stream_true():
    whole = json.dumps({"choices": [{"message": {"content": "all at once"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 3}}).encode()
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(whole) + whole
    async with ScriptedServer([response]) as server:
        provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport="lean")
        assert await outcome(provider) == ("ok", "all at once", Usage(1, 3))
        await provider.aclose()


async def test_bytes_on_an_idle_pooled_connection_are_not_taken_for_the_next_answer():
    good = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(events("ok"))
    stray = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n"
    async with ScriptedServer([good + stray, good], close_after=None) as server:
        provider = OpenAICompatibleProvider(server.url, "k", timeout=5, transport="lean")
        assert (await outcome(provider))[0] == "ok"
        await asyncio.sleep(0.05)  # the stray head arrives while the connection is idle
        assert await outcome(provider) == ("ok", "ok", Usage(2, 3))
        assert server.connections == 2
        await provider.aclose()


# -- TLS contexts: never made on the event loop ---------------------------------


@pytest.fixture
def ca_loads(monkeypatch):
    """Threads that loaded CA certificates into a TLS context (the 50-90 ms part of making one)."""
    import ssl
    import threading

    threads: list[int] = []
    for name in ("load_verify_locations", "set_default_verify_paths"):
        real = getattr(ssl.SSLContext, name)

        def spy(self, *args, _real=real, **kwargs):
            threads.append(threading.get_ident())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(ssl.SSLContext, name, spy)
    return threads


async def test_an_http_upstream_costs_no_tls_context_on_the_lean_path(ca_loads):
    async with FakeOpenAIServer(tokens=3) as server:
        provider = OpenAICompatibleProvider(server.base_url, "k", timeout=2)
        assert provider.transport == "lean"
        assert (await outcome(provider)) == ("ok", "".join(answer_tokens("hi there", 3)), Usage(2, 3))
        await provider.aclose()
    assert ca_loads == []


def self_signed(tmp_path):
    """(server TLS context, path of its certificate) for 127.0.0.1, made with `cryptography`."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "combo test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "upstream.crt", tmp_path / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


async def test_an_https_upstream_gets_its_tls_context_made_off_the_event_loop(tmp_path, monkeypatch, ca_loads):
    import threading

    server_context, ca_file = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # how an operator trusts a private CA
    async with FakeOpenAIServer(tokens=3, ssl_context=server_context) as server:
        assert server.base_url.startswith("https://")
        provider = OpenAICompatibleProvider(server.base_url, "k", timeout=5)
        assert provider.transport == "lean"
        loads_before = len(ca_loads)
        # Questions arriving together share one context, made once.
        results = await asyncio.gather(*(outcome(provider) for _ in range(3)))
        assert results == [("ok", "".join(answer_tokens("hi there", 3)), Usage(2, 3))] * 3
        made = ca_loads[loads_before:]
        assert len(made) == 1 and made[0] != threading.get_ident()
        assert (await outcome(provider))[0] == "ok"  # later questions reuse it
        assert len(ca_loads) == loads_before + 1
        await provider.aclose()


async def test_a_tls_context_that_cannot_be_made_fails_the_question_and_is_tried_again(tmp_path, monkeypatch):
    server_context, ca_file = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.crt"))
    async with FakeOpenAIServer(tokens=3, ssl_context=server_context) as server:
        provider = OpenAICompatibleProvider(server.base_url, "k", timeout=5)
        with pytest.raises(LLMError) as caught:
            async for _ in provider.stream(REQUEST):
                pass
        assert caught.value.error == ErrorCode.UPSTREAM_ERROR and not caught.value.retryable
        assert "CA certificates did not load (FileNotFoundError)" in caught.value.message
        assert "SSL_CERT_FILE" in caught.value.message and str(tmp_path) not in caught.value.message
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        assert (await outcome(provider))[0] == "ok"
        await provider.aclose()
