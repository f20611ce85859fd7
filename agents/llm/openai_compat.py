"""A provider for any server that speaks OpenAI's chat-completions API.

OpenAI itself, vLLM, Ollama, llama.cpp, LiteLLM and most hosted gateways accept
the same `POST {base_url}/chat/completions` with `stream: true`. This module
drives them through the official `openai` SDK and turns every failure into an
`LLMError` with one of the UPSTREAM_* codes and a message that says what the
operator should check, never the key.

It sits on the hot path (hundreds of concurrent streams, tens of thousands of
tokens a second in one process), so the per-token work is one `json.loads`
and a few dict look-ups: no logging, no objects of our own.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import openai

from combo.errors import ErrorCode

from .base import ChatRequest, LLMError, Provider, Usage

try:  # optional: the faster transport (see OpenAICompatibleProvider)
    import aiohttp

    # Not OSErrors, but a dropped connection all the same.
    _AIOHTTP_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
        aiohttp.ClientConnectionError,
        aiohttp.ClientPayloadError,
    )
except ImportError:
    _AIOHTTP_CONNECTION_ERRORS = ()


def _http_module() -> Any:
    """The httpx flavour the installed SDK is built on.

    openai>=3 runs on `httpx2`, earlier majors on `httpx`; the pool limits and
    timeouts must be objects of the same library as the client.
    """
    try:
        import httpx2

        if issubclass(openai.DefaultAsyncHttpxClient, httpx2.AsyncClient):
            return httpx2
    except ImportError:
        pass
    import httpx

    return httpx


_http = _http_module()

# Anything that looks like a bearer token or an OpenAI-style key, so that an
# upstream error text we pass on cannot leak one even if the server echoed it.
_SECRET_PATTERN = re.compile(r"(?i)\b(?:bearer\s+\S+|sk-[A-Za-z0-9_\-*.]{4,})")
_MAX_UPSTREAM_DETAIL = 300
_MAX_EVENT_BYTES = 8 << 20  # one SSE event; real ones are a few hundred bytes


def safe_url(url: str) -> str:
    """`url` without user info, query or fragment: fit to show in an error message."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the configured COMBO_LLM_BASE_URL"
    if not parts.scheme or not host:
        return "the configured COMBO_LLM_BASE_URL"
    return f"{parts.scheme}://{host}{port}{parts.path}"


class OpenAICompatibleProvider(Provider):
    """Streams chat completions from an OpenAI-compatible server.

    Holds one `AsyncOpenAI` (and one pooled HTTP client) per event loop: HTTP
    connections belong to the loop that opened them, and sync code paths
    (`async_to_sync`, `asyncio.run` in tests) run each call on a fresh loop.
    Under an ASGI server there is one loop, hence one pool shared by all
    requests. The SDK's own retries are off: whether to retry is the caller's
    decision, guided by `LLMError.retryable`.

    `transport` picks the SDK's HTTP client: "httpx" (its default) or
    "aiohttp" (the SDK's `DefaultAioHttpClient`, about half the CPU per token;
    needs the `aiohttp` package, and unlike httpx ignores HTTP(S)_PROXY).
    "auto" uses aiohttp when it is installed.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float = 60.0,
        name: str = "openai",
        *,
        max_connections: int = 2000,
        max_keepalive_connections: int = 1000,
        keepalive_expiry: float = 30.0,
        transport: str = "auto",
    ) -> None:
        if transport == "auto":
            transport = "aiohttp" if _AIOHTTP_CONNECTION_ERRORS else "httpx"
        if transport not in ("httpx", "aiohttp"):
            raise ValueError(f"transport must be 'auto', 'httpx' or 'aiohttp', not {transport!r}")
        if not base_url.strip():
            # The SDK would quietly fall back to api.openai.com.
            raise ValueError("base_url is required; use OfflineProvider when no model is configured")
        self.transport = transport
        self.name = name
        self.base_url = base_url
        self.timeout = timeout
        # Local servers (Ollama, vLLM) often need no key, but the SDK refuses
        # None and would otherwise read OPENAI_API_KEY from the environment.
        self._api_key = api_key or "no-key"
        self._where = safe_url(base_url)
        self._limits = _http.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )
        # `timeout` bounds connecting, waiting for the first byte and every gap
        # between two chunks, so a stream that stalls half-way fails too.
        self._timeout = _http.Timeout(timeout, connect=min(timeout, 10.0))
        # loop -> (client, the guard that closes it when the loop shuts down)
        self._clients: dict[asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, AsyncGenerator[None, None]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, base_url={self._where!r})"

    # -- clients ---------------------------------------------------------------

    async def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is not None:
            return entry[0]
        created = False
        with self._lock:
            # Forget clients of loops closed without asyncio.run's clean-up.
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]
            entry = self._clients.get(loop)
            if entry is None:
                client = openai.AsyncOpenAI(
                    base_url=self.base_url,
                    api_key=self._api_key,
                    timeout=self._timeout,
                    max_retries=0,
                    http_client=self._http_client(),
                )
                entry = (client, self._close_with_loop(loop, client))
                self._clients[loop] = entry
                created = True
        if created:
            # Runs to its `yield` at once, registering with this loop.
            await entry[1].__anext__()
        return entry[0]

    async def _close_with_loop(
        self, loop: asyncio.AbstractEventLoop, client: openai.AsyncOpenAI
    ) -> AsyncGenerator[None, None]:
        """Closes `client` when its loop shuts down.

        asyncio.run() (and so async_to_sync) closes every suspended async
        generator of its loop before closing the loop; this one waits there,
        so a client made for a short-lived loop closes its connections on that
        loop instead of leaking them (aiohttp warns about each one).
        """
        try:
            yield
        finally:
            with self._lock:
                if self._clients.get(loop, (None,))[0] is client:
                    del self._clients[loop]
            await client.close()

    def _http_client(self) -> Any:
        # Both are httpx(2) clients as far as the SDK is concerned; the aiohttp
        # one reads the body in 16 KiB pieces through a C parser instead of one
        # Python-level HTTP chunk per token, halving the CPU per token.
        factory = openai.DefaultAioHttpClient if self.transport == "aiohttp" else openai.DefaultAsyncHttpxClient
        return factory(limits=self._limits, timeout=self._timeout)

    async def aclose(self) -> None:
        """Close this loop's connections (other loops' close as those loops end)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[1].aclose()  # runs its `finally`: closes the client

    # -- streaming -------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | Usage, None]:
        params: dict[str, Any] = {
            "model": request.model,
            # The SDK walks every parameter against its TypedDicts before
            # sending (about 1 ms for a 10-message prompt, more than the rest of
            # the request); for plain role/content strings that walk changes
            # nothing. `extra_body` keys replace same-named ones unchanged, so
            # the messages travel there and the typed argument stays empty.
            "messages": [],
            "extra_body": {"messages": [{"role": m.role, "content": m.content} for m in request.messages]},
            "stream": True,
            # Servers that do not know this option ignore it; usage is then absent.
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens

        # The SDK sends the request, authenticates and turns HTTP errors into
        # its typed exceptions; the body is read here rather than through its
        # `AsyncStream`, which builds three pydantic objects per token and so
        # costs several times more CPU than the rest of the path together.
        try:
            client = await self._client()
            opening = client.chat.completions.with_streaming_response.create(**params)
            response = await opening.__aenter__()
        except Exception as err:  # noqa: BLE001 - every failure becomes an LLMError
            raise self._opening_error(err) from _loggable_cause(err)

        http_response = response.http_response
        loads = json.loads
        finished = done = False
        usage: Usage | None = None
        try:
            if not http_response.headers.get("content-type", "").startswith("text/event-stream"):
                # A server that ignored `stream: true` and sent the whole answer.
                text, finished, usage = _whole_answer(loads(await http_response.aread()))
                if text:
                    yield text
            else:
                async for batch in _sse_payloads(http_response):
                    for payload in batch:
                        # After [DONE] the body is still read to its end so that
                        # the HTTP/1.1 connection can go back to the pool.
                        if done:
                            continue
                        if payload == b"[DONE]":
                            done = True
                            continue
                        event = loads(payload)
                        choices = event.get("choices")
                        if choices:
                            choice = choices[0]
                            delta = choice.get("delta")
                            if delta:
                                content = delta.get("content")
                                if content:
                                    yield content
                            if choice.get("finish_reason") is not None:
                                finished = True
                        elif event.get("error"):
                            raise self._error_event(event["error"])
                        if event.get("usage"):
                            usage = _usage(event["usage"])
        except LLMError:
            raise
        except Exception as err:  # noqa: BLE001
            raise self._midstream_error(err) from _loggable_cause(err)
        finally:
            # Also runs when the consumer stops early (its client went away).
            try:
                await opening.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001 - already failing or closing
                pass

        if not finished:
            raise LLMError(
                ErrorCode.UPSTREAM_BAD_RESPONSE,
                f"The language model at {self._where} ended its answer without finishing it "
                "(no finish_reason); try again, and check the server's logs if it persists.",
                retryable=True,
            )
        if usage is not None:
            yield usage

    # -- error mapping ---------------------------------------------------------

    def _opening_error(self, err: Exception) -> LLMError:
        """Classify a failure before the first chunk arrived."""
        where = self._where
        if isinstance(err, openai.APIStatusError):
            return self._status_error(err)
        kind = _failure_kind(err)
        if kind == "timeout" or (kind is None and isinstance(err, openai.APITimeoutError)):
            return LLMError(
                ErrorCode.UPSTREAM_TIMEOUT,
                f"The language model at {where} did not answer within {self.timeout:g} s; "
                "try again, or check that the server is not overloaded.",
                retryable=True,
            )
        if kind == "connection" or isinstance(err, openai.APIConnectionError):
            if _caused_by(err, socket.gaierror):
                reason = "its host name could not be resolved"
            else:
                reason = "the connection failed"
            return LLMError(
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"Could not reach the language model at {where} ({reason}); "
                "check COMBO_LLM_BASE_URL and that the server is running.",
                retryable=True,
            )
        if isinstance(err, openai.APIResponseValidationError):
            return self._bad_response(err)
        return LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"The request to the language model at {where} failed ({type(err).__name__}); "
            "check COMBO_LLM_BASE_URL and the server's logs.",
            retryable=False,
        )

    def _status_error(self, err: openai.APIStatusError) -> LLMError:
        where = self._where
        status = err.status_code
        if status in (401, 403):
            # The upstream's own text is dropped: some servers echo the key.
            return LLMError(
                ErrorCode.UPSTREAM_AUTH_FAILED,
                f"The language model at {where} refused Combo's credentials (HTTP {status}); check COMBO_LLM_API_KEY.",
                retryable=False,
            )
        detail = self._upstream_detail(err)
        if status == 429:
            return LLMError(
                ErrorCode.UPSTREAM_RATE_LIMITED,
                f"The language model at {where} is rate limiting Combo (HTTP 429){detail}; "
                "try again later, or raise the provider's rate limit.",
                retryable=True,
                retry_after=_retry_after(err),
            )
        if status >= 500:
            return LLMError(
                ErrorCode.UPSTREAM_ERROR,
                f"The language model at {where} failed (HTTP {status}){detail}; try again later.",
                retryable=True,
            )
        hint = (
            "check COMBO_LLM_BASE_URL (does it end in /v1?) and the model name"
            if status == 404
            else ("check the model name and the request limits of the provider")
        )
        return LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"The language model at {where} rejected the request (HTTP {status}){detail}; {hint}.",
            retryable=False,
        )

    def _midstream_error(self, err: Exception) -> LLMError:
        """Classify a failure after the answer started streaming."""
        kind = _failure_kind(err)
        if kind == "timeout" or (kind is None and isinstance(err, (_http.TimeoutException, openai.APITimeoutError))):
            return LLMError(
                ErrorCode.UPSTREAM_TIMEOUT,
                f"The language model at {self._where} stopped sending its answer for more than "
                f"{self.timeout:g} s; try again.",
                retryable=True,
            )
        if kind == "connection" or isinstance(
            err, (_http.TransportError, openai.APIConnectionError, anyio.EndOfStream)
        ):
            return LLMError(
                ErrorCode.UPSTREAM_BAD_RESPONSE,
                f"The connection to the language model at {self._where} was cut before the answer "
                "was complete; try again.",
                retryable=True,
            )
        return self._bad_response(err)

    def _error_event(self, error: object) -> LLMError:
        """An `{"error": ...}` event inside the stream."""
        text = error.get("message") if isinstance(error, dict) else error
        return LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"The language model at {self._where} reported an error mid-answer{self._scrubbed(text)}; try again.",
            retryable=True,
        )

    def _bad_response(self, err: Exception) -> LLMError:
        return LLMError(
            ErrorCode.UPSTREAM_BAD_RESPONSE,
            f"The language model at {self._where} sent a malformed answer ({type(err).__name__}); "
            "check that COMBO_LLM_BASE_URL points to an OpenAI-compatible API.",
            retryable=True,
        )

    def _upstream_detail(self, err: openai.APIError) -> str:
        """The upstream's own error text from `err`, as ': "..."' (or '')."""
        body = err.body
        text: object = body
        if isinstance(body, dict):
            text = body.get("message") or body.get("error")
        return self._scrubbed(text)

    def _scrubbed(self, text: object) -> str:
        """Upstream text fit for users: secrets removed, shortened, as ': "..."'."""
        if not isinstance(text, str) or not text.strip():
            return ""
        text = " ".join(text.split())
        if len(self._api_key) >= 8:  # a short dummy key would mangle the text
            text = text.replace(self._api_key, "[redacted]")
        text = _SECRET_PATTERN.sub("[redacted]", text)
        if len(text) > _MAX_UPSTREAM_DETAIL:
            text = text[: _MAX_UPSTREAM_DETAIL - 1] + "…"
        return f': "{text}"'


def _loggable_cause(err: Exception) -> Exception | None:
    """`err` if it may be chained (and so logged), None if its text could hold a secret.

    The SDK's error text repeats the upstream's body, and some servers echo
    the key there; the scrubbed part of it is already in our own message.
    """
    if isinstance(err, openai.APIError) and err.body is not None:
        return None
    return err


class _SSEParser:
    """Splits a server-sent-events byte stream into the `data` of its events.

    Fed whole network reads, returns a list per read rather than yielding
    per event, so the per-token cost is a bytes split and a list append.
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._buffer:
            chunk = self._buffer + chunk
            if len(chunk) > _MAX_EVENT_BYTES:
                raise ValueError("an event in the stream exceeds the size limit")
        lines = chunk.split(b"\n")
        self._buffer = lines.pop()
        events: list[bytes] = []
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if line:
                # Only `data:` matters; `event:`, `id:` and `: keep-alive`
                # comment lines are ignored.
                if line[:5] == b"data:":
                    self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif self._data:
                data = self._data
                events.append(data[0] if len(data) == 1 else b"\n".join(data))
                self._data = []
        return events

    def finish(self) -> list[bytes]:
        """Events left when the body ends without a final blank line."""
        return self.feed(b"\n\n") if self._buffer or self._data else []


async def _sse_payloads(response: Any) -> AsyncIterator[list[bytes]]:
    parser = _SSEParser()
    async for chunk in response.aiter_bytes():
        events = parser.feed(chunk)
        if events:
            yield events
    yield parser.finish()


def _whole_answer(body: Any) -> tuple[str, bool, Usage | None]:
    """Text, whether it finished, and usage of a non-streamed chat completion."""
    choice = body["choices"][0]
    return choice["message"].get("content") or "", choice.get("finish_reason") is not None, _usage(body.get("usage"))


def _usage(reported: object) -> Usage | None:
    if not isinstance(reported, dict):
        return None
    return Usage(reported.get("prompt_tokens"), reported.get("completion_tokens"))


def _failure_kind(err: BaseException) -> str | None:
    """ "timeout" or "connection", judged by the innermost cause that tells.

    The wrappers' own classes are not enough: the SDK's aiohttp adapter
    reports a refused connection or a DNS failure as a *connect timeout*, and
    a server disconnect as one too.
    """
    for exc in reversed(_chain(err)):
        if isinstance(exc, TimeoutError):  # includes asyncio's and aiohttp's timeouts
            return "timeout"
        if isinstance(exc, OSError) or isinstance(exc, _AIOHTTP_CONNECTION_ERRORS):
            return "connection"
    return None


def _chain(err: BaseException) -> list[BaseException]:
    """`err` and its causes, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and len(chain) < 20 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(exc, kind) for exc in _chain(err))


def _retry_after(err: openai.APIStatusError) -> float | None:
    value = err.response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs, not worth parsing
    return seconds if seconds >= 0 else None
