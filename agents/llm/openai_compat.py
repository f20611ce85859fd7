"""A provider for any server that speaks OpenAI's chat-completions API.

OpenAI itself, vLLM, Ollama, llama.cpp, LiteLLM and most hosted gateways accept
the same `POST {base_url}/chat/completions` with `stream: true`. This module
drives them with the official `openai` SDK and turns every failure into an
`LLMError` with one of the UPSTREAM_* codes and a message that says what the
operator should check, never the key.

It sits on the hot path: hundreds of concurrent streams, tens of thousands of
tokens a second in one process (bench/README.md). Measured on a 2-core
machine, the SDK's `create()` costs about 0.4 ms of CPU per request before any
byte is sent, and httpx's connection pool as much again (it also rescans every
pooled connection on each request, so at 500 streams that grows to
milliseconds), which alone puts the 250th of 500 simultaneous questions a
quarter of a second behind. So the SDK's client stays the source of truth
for what is sent (base URL, `Authorization` and its default headers, built
once per event loop) and for the error types the mapping below classifies, but
a streamed completion over plain HTTP(S) travels through `wire`, a lean
HTTP/1.1 client: one write per request on a pooled keep-alive connection,
and server-sent events split out of each network read inside the protocol.
Anything `wire` does not do (proxies from the environment, a base URL with
a query or credentials) goes through the SDK's own request path, as does any
provider built with `transport="httpx"`. Both paths share the event loop
below and the error mapping.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import openai
import orjson

from combo.errors import ErrorCode

from . import wire
from .base import ChatRequest, LLMError, Provider, Usage
from .sse import SSEParser


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
_SHORT_UPSTREAM_DETAIL = 160
# After `data: [DONE]` the rest of the body (usually just the last chunk
# marker) is awaited this long so the connection can be reused, then dropped.
_DRAIN_AFTER_DONE = 1.0

_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


class _NoSending(_http.AsyncBaseTransport):
    async def handle_async_request(self, request: Any) -> Any:
        raise RuntimeError("the lean transport sends through agents.llm.wire, not the SDK's client")


def _headers_only_client() -> Any:
    """The SDK client's HTTP client on the lean path, which only reads the SDK's headers from it.

    The SDK's default client builds a TLS context on creation (loading the CA
    bundle: 50-90 ms of CPU); made on the first question, it would stall every
    stream on the event loop, for an http upstream that never uses it.
    """
    return _http.AsyncClient(transport=_NoSending(), trust_env=False, follow_redirects=False)


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


class _Target:
    """Where a lean request goes: `POST {base_url}/chat/completions` over HTTP/1.1."""

    __slots__ = ("scheme", "host", "port", "path", "authority")

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("only http and https")
        if parts.query or parts.fragment or parts.username or parts.password or not parts.hostname:
            raise ValueError("a query, fragment or credentials in the base URL")
        self.scheme = parts.scheme
        self.host = parts.hostname
        default = 443 if parts.scheme == "https" else 80
        self.port = parts.port or default
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if self.port == default else f"{host}:{self.port}"
        self.path = (parts.path.rstrip("/") or "") + "/chat/completions"
        if any(c in self.path for c in " \r\n"):
            raise ValueError("a path that needs escaping")
        proxies = urllib.request.getproxies()
        if (proxies.get(self.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(self.host):
            raise ValueError("a proxy is configured for this host")


def _lean_target(base_url: str) -> _Target | None:
    try:
        return _Target(base_url)
    except ValueError:
        return None


class OpenAICompatibleProvider(Provider):
    """Streams chat completions from an OpenAI-compatible server.

    Holds one `AsyncOpenAI` (with its pooled HTTP client) and one `wire.Pool`
    per event loop: connections belong to the loop that opened them, and sync
    code paths (`async_to_sync`, `asyncio.run` in tests) run each call on a
    fresh loop. Under an ASGI server there is one loop, hence one pool shared
    by all requests. The SDK's own retries are off: whether to retry is the
    caller's decision, guided by `LLMError.retryable`.

    `transport`: "auto" (the lean client when the base URL allows it, else
    the SDK's httpx client), "lean", "httpx" or "aiohttp" (the SDK's clients).
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
        if transport not in ("auto", "lean", "httpx", "aiohttp"):
            raise ValueError(f"transport must be 'auto', 'lean', 'httpx' or 'aiohttp', not {transport!r}")
        if not base_url.strip():
            # The SDK would quietly fall back to api.openai.com.
            raise ValueError("base_url is required; use OfflineProvider when no model is configured")
        self._target = _lean_target(base_url) if transport in ("auto", "lean") else None
        if transport == "lean" and self._target is None:
            raise ValueError("the lean transport needs a plain http(s) base URL and no proxy")
        if transport == "auto":
            transport = "lean" if self._target is not None else "aiohttp" if _aiohttp_available() else "httpx"
        self.transport = transport
        self.name = name
        self.base_url = base_url
        self.timeout = timeout
        # Local servers (Ollama, vLLM) often need no key, but the SDK refuses
        # None and would otherwise read OPENAI_API_KEY from the environment.
        self._api_key = api_key or "no-key"
        self._where = safe_url(base_url)
        self._max_keepalive = max_keepalive_connections
        self._keepalive_expiry = keepalive_expiry
        self._limits = _http.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )
        # `timeout` bounds connecting, waiting for the first byte and every gap
        # between two chunks, so a stream that stalls half-way fails too.
        self._timeout = _http.Timeout(timeout, connect=min(timeout, 10.0))
        self._clients: dict[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = {}
        self._pools: dict[asyncio.AbstractEventLoop, wire.Pool] = {}
        self._head: bytes | None = None  # the lean request's fixed headers
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, base_url={self._where!r})"

    # -- clients ---------------------------------------------------------------

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        with self._lock:
            # Forget clients of loops that are gone; their sockets die with them.
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]
            for old in [old for old in self._pools if old.is_closed()]:
                del self._pools[old]
            client = self._clients.get(loop)
            if client is None:
                client = openai.AsyncOpenAI(
                    base_url=self.base_url,
                    api_key=self._api_key,
                    timeout=self._timeout,
                    max_retries=0,
                    http_client=self._http_client() if self.transport != "lean" else _headers_only_client(),
                )
                self._clients[loop] = client
            return client

    def _http_client(self) -> Any:
        # Both are httpx(2) clients as far as the SDK is concerned; the aiohttp
        # one reads the body in 16 KiB pieces through a C parser instead of one
        # Python-level HTTP chunk per token, halving the CPU per token.
        factory = openai.DefaultAioHttpClient if self.transport == "aiohttp" else openai.DefaultAsyncHttpxClient
        # Not followed, as on the lean path: a redirect says COMBO_LLM_BASE_URL is not the right address.
        return factory(limits=self._limits, timeout=self._timeout, follow_redirects=False)

    def _pool(self) -> wire.Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = wire.Pool(
                connect_timeout=min(self.timeout, 10.0),
                max_idle=self._max_keepalive,
                keepalive_expiry=self._keepalive_expiry,
                ssl_context_factory=_http.create_ssl_context,
            )
        return pool

    def _request_head(self) -> bytes:
        """The lean request's head up to Content-Length: what the SDK's client would send."""
        if self._head is None:
            client = self._client()
            target = self._target
            headers = {
                "Host": target.authority,
                **{k: v for k, v in client.default_headers.items() if isinstance(v, str)},
                **client.auth_headers,
                "X-Stainless-Retry-Count": "0",
                "Accept-Encoding": "identity",
                "Connection": "keep-alive",
            }
            lines = [f"POST {target.path} HTTP/1.1"]
            for key, value in headers.items():
                if any(c in key + value for c in "\r\n"):
                    raise LLMError(
                        ErrorCode.UPSTREAM_ERROR,
                        f"The request headers for the language model at {self._where} are malformed; "
                        "check COMBO_LLM_API_KEY for stray line breaks.",
                        retryable=False,
                    )
                lines.append(f"{key}: {value}")
            self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1", "replace")
        return self._head

    async def aclose(self) -> None:
        """Close the pools of the running loop; pools of other loops are dropped."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
            pool = self._pools.pop(loop, None)
            self._clients.clear()
            self._pools.clear()
        if pool is not None:
            pool.close()
        if client is not None:
            await client.close()

    # -- streaming -------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            # Servers that do not know this option ignore it; usage is then absent.
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens

        if self.transport == "lean":
            source = await self._open_lean(params)
        else:
            source = await self._open_sdk(params)

        # Deltas that arrive in one network read go out as one piece: a busy
        # process then falls behind by reads, not by tokens.
        loads = _loads
        done = False
        finish: object = None  # the finish_reason, once one came
        usage: Usage | None = None
        # A reasoning model's thinking (`reasoning_content`, or `reasoning` as
        # Ollama and newer vLLM name it) is not part of the answer; it is only
        # noted, so that an answer of thinking alone is not passed as an empty one.
        reasoned = answered = False
        try:
            events = source.events
            whole = None
            if not source.event_stream:
                body = await source.body()
                if body[:64].lstrip().startswith((b"data:", b":", b"event:", b"id:")):
                    # Server-sent events under another Content-Type (or none).
                    events = _replayed(body)
                else:
                    whole = body
            if whole is not None:
                # A server that ignored `stream: true` and sent the whole answer.
                event = loads(whole)
                if isinstance(event, dict) and not event.get("choices") and _is_error(event):
                    raise self._reported_error(event.get("error") or event, mid_answer=False)
                choice = event["choices"][0]
                message = choice["message"]
                content = message.get("content")
                if content:
                    text = _text(content)
                    answered = bool(text)
                    yield text
                reasoned = bool(message.get("reasoning_content") or message.get("reasoning"))
                finish = choice.get("finish_reason")
                usage = _usage(event.get("usage"))
            else:
                while not done:
                    batch = await events()
                    if not batch:
                        break
                    pieces: list[str] = []
                    try:
                        for payload in batch:
                            if payload == b"[DONE]":
                                done = True
                                break
                            event = loads(payload)
                            choices = event.get("choices")
                            if choices:
                                choice = choices[0]
                                delta = choice.get("delta")
                                if delta:
                                    content = delta.get("content")
                                    if content:
                                        pieces.append(content if type(content) is str else _text(content))
                                    elif not reasoned:
                                        reasoned = bool(delta.get("reasoning_content") or delta.get("reasoning"))
                                if choice.get("finish_reason") is not None:
                                    finish = choice["finish_reason"]
                            elif _is_error(event):
                                raise self._reported_error(event.get("error") or event)
                            if event.get("usage"):
                                usage = _usage(event["usage"])
                    except Exception:
                        # What arrived before the failure is part of the answer.
                        if pieces:
                            yield "".join(pieces)
                        raise
                    if pieces:
                        text = pieces[0] if len(pieces) == 1 else "".join(pieces)
                        answered = answered or bool(text)
                        yield text
        except LLMError:
            raise
        except Exception as err:  # noqa: BLE001
            raise self._midstream_error(err) from _loggable_cause(err)
        finally:
            # Also runs when the consumer stops early (its client went away).
            await source.aclose(drain=done)

        if finish is None and not done:
            # Neither a finish_reason nor [DONE] (which some servers send without one): cut short.
            raise LLMError(
                ErrorCode.UPSTREAM_BAD_RESPONSE,
                f"The language model at {self._where} ended its answer without finishing it "
                "(no finish_reason, no [DONE]); try again, and check the server's logs if it persists.",
                retryable=True,
            )
        # An answer that did not simply end is said so even when no usage came.
        reason = finish[:32] if isinstance(finish, str) and finish else "stop"
        if reasoned and not answered:
            raise self._reasoning_only(reason)
        if usage is not None or reason != "stop":
            usage = usage or Usage()
            usage.finish_reason = reason
            yield usage

    async def _open_sdk(self, params: dict[str, Any]) -> _SDKSource:
        # The SDK sends the request, authenticates and turns HTTP errors into
        # its typed exceptions; the body is read here rather than through its
        # `AsyncStream`, which builds three pydantic objects per token.
        opening = self._client().chat.completions.with_streaming_response.create(**params)
        try:
            response = await opening.__aenter__()
        except Exception as err:  # noqa: BLE001 - every failure becomes an LLMError
            raise self._opening_error(err, params["model"]) from _loggable_cause(err)
        return _SDKSource(opening, response.http_response)

    async def _open_lean(self, params: dict[str, Any]) -> _LeanSource:
        target = self._target
        # Compact UTF-8, as json.dumps(separators=(",", ":"), ensure_ascii=False)
        # writes it, at a tenth of the time (6.4 -> 0.3 us for a short prompt,
        # 38 -> 2.3 us for 6 KB of knowledge passages).
        body = orjson.dumps(params)
        data = self._request_head() + b"Content-Length: %d\r\n\r\n" % len(body) + body
        try:
            conn, response = await self._pool().request(
                target.scheme, target.host, target.port, data, self.timeout, True
            )
        except wire.ProtocolError as err:
            raise self._bad_response(err) from err
        except wire.TLSContextError as err:
            raise LLMError(
                ErrorCode.UPSTREAM_ERROR,
                f"Could not set up TLS for the language model at {self._where}: its CA certificates did not "
                f"load ({type(err.__cause__).__name__}); check SSL_CERT_FILE and SSL_CERT_DIR.",
                retryable=False,
            ) from err
        except (OSError, TimeoutError) as err:
            sdk_error = self._sdk_error(err)
            raise self._opening_error(sdk_error, params["model"]) from err
        if 200 <= response.status < 300:
            return _LeanSource(conn, response)
        # An error answer: read it (briefly) and let the SDK's own error type carry it.
        try:
            async with asyncio.timeout(min(self.timeout, 10.0)):
                raw = await conn.read()
        except Exception:  # noqa: BLE001 - the status says enough
            raw = b""
        finally:
            conn.release()
        raise self._opening_error(self._status_exception(response, raw), params["model"])

    def _httpx_request(self) -> Any:
        target = self._target
        return _http.Request("POST", f"{target.scheme}://{target.authority}{target.path}")

    def _sdk_error(self, err: BaseException) -> openai.APIError:
        """A lean-path failure before the answer, as the SDK would have raised it."""
        request = self._httpx_request()
        if isinstance(err, TimeoutError):
            out: openai.APIError = openai.APITimeoutError(request=request)
        else:
            out = openai.APIConnectionError(request=request)
        out.__cause__ = err
        return out

    def _status_exception(self, response: wire.Response, raw: bytes) -> openai.APIStatusError:
        try:
            body: object = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            body = raw.decode("utf-8", "replace")
        data = body.get("error", body) if isinstance(body, dict) else body
        http_response = _http.Response(
            response.status, headers=list(response.headers.items()), content=raw, request=self._httpx_request()
        )
        kind = _STATUS_ERRORS.get(response.status)
        if kind is None:
            kind = openai.InternalServerError if response.status >= 500 else openai.APIStatusError
        return kind(f"Error code: {response.status}", response=http_response, body=data)

    # -- error mapping ---------------------------------------------------------

    def _opening_error(self, err: Exception, model: str) -> LLMError:
        """Classify a failure before the first chunk arrived (`model`: the one asked for)."""
        where = self._where
        if isinstance(err, openai.APITimeoutError):
            return LLMError(
                ErrorCode.UPSTREAM_TIMEOUT,
                f"The language model at {where} did not answer within {self.timeout:g} s; "
                "try again, or check that the server is not overloaded.",
                retryable=True,
            )
        if isinstance(err, openai.APIConnectionError):
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
        if isinstance(err, openai.APIStatusError):
            return self._status_error(err, model)
        if isinstance(err, openai.APIResponseValidationError):
            return self._bad_response(err)
        return LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"The request to the language model at {where} failed ({type(err).__name__}); "
            "check COMBO_LLM_BASE_URL and the server's logs.",
            retryable=False,
        )

    def _status_error(self, err: openai.APIStatusError, model: str) -> LLMError:
        where = self._where
        status = err.status_code
        if status in (401, 403):
            # The upstream's own text is dropped: some servers echo the key.
            return LLMError(
                ErrorCode.UPSTREAM_AUTH_FAILED,
                f"The language model at {where} refused Combo's credentials (HTTP {status}); "
                "check COMBO_LLM_API_KEY.",
                retryable=False,
            )
        if 300 <= status < 400:
            target = _origin(err.response.headers.get("location", ""))
            return LLMError(
                ErrorCode.UPSTREAM_ERROR,
                f"The language model at {where} redirected the request (HTTP {status}"
                f"{f', to {target}' if target else ''}); set COMBO_LLM_BASE_URL to the address it should go to.",
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
        # Shorter upstream text where the advice is long: a message is stored up to 500 characters.
        if status == 404:
            detail = self._upstream_detail(err, _SHORT_UPSTREAM_DETAIL)
            hint = (
                f"check that it serves the model {model[:100]!r} (the agent's model, else COMBO_LLM_MODEL) "
                "and that COMBO_LLM_BASE_URL is its OpenAI-compatible /v1 URL"
            )
        elif _context_exceeded(err.body):
            detail = self._upstream_detail(err, _SHORT_UPSTREAM_DETAIL)
            hint = _CONTEXT_ADVICE
        else:
            hint = "check the model name and the request limits of the provider"
        return LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"The language model at {where} rejected the request (HTTP {status}){detail}; {hint}.",
            retryable=False,
        )

    def _midstream_error(self, err: Exception) -> LLMError:
        """Classify a failure after the answer started streaming."""
        if isinstance(err, (_http.TimeoutException, openai.APITimeoutError, TimeoutError)):
            return LLMError(
                ErrorCode.UPSTREAM_TIMEOUT,
                f"The language model at {self._where} stopped sending its answer for more than "
                f"{self.timeout:g} s; try again.",
                retryable=True,
            )
        if isinstance(err, (_http.TransportError, openai.APIConnectionError, OSError, anyio.EndOfStream)):
            return LLMError(
                ErrorCode.UPSTREAM_BAD_RESPONSE,
                f"The connection to the language model at {self._where} was cut before the answer "
                "was complete; try again.",
                retryable=True,
            )
        return self._bad_response(err)

    def _reported_error(self, error: object, *, mid_answer: bool = True) -> LLMError:
        """The upstream's own `{"error": ...}`: an event inside the stream, or a 200 body instead of an answer."""
        text = error.get("message") if isinstance(error, dict) else error
        if _context_exceeded(error):
            return LLMError(
                ErrorCode.UPSTREAM_ERROR,
                f"The language model at {self._where} refused the request"
                f"{self._scrubbed(text, _SHORT_UPSTREAM_DETAIL)}; {_CONTEXT_ADVICE}.",
                retryable=False,
            )
        said, advice = (
            ("reported an error mid-answer", "try again") if mid_answer
            else ("answered with an error instead of an answer", "check the agent's model and try again")
        )
        return LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"The language model at {self._where} {said}{self._scrubbed(text)}; {advice}.",
            retryable=True,
        )

    def _reasoning_only(self, finish_reason: str) -> LLMError:
        """A reasoning model that thought but gave no answer text."""
        if finish_reason == "length":
            said, advice = (
                'spent its whole answer on reasoning and gave no answer (finish_reason "length")',
                "raise the agent's max tokens, or ask for less",
            )
        else:
            said, advice = (
                "sent only reasoning and no answer",
                "try again, and if it persists check the server's reasoning parser settings",
            )
        return LLMError(
            ErrorCode.UPSTREAM_BAD_RESPONSE, f"The language model at {self._where} {said}; {advice}.", retryable=True
        )

    def _bad_response(self, err: Exception) -> LLMError:
        return LLMError(
            ErrorCode.UPSTREAM_BAD_RESPONSE,
            f"The language model at {self._where} sent a malformed answer ({type(err).__name__}); "
            "check that COMBO_LLM_BASE_URL points to an OpenAI-compatible API.",
            retryable=True,
        )

    def _upstream_detail(self, err: openai.APIError, limit: int = _MAX_UPSTREAM_DETAIL) -> str:
        """The upstream's own error text from `err`, as ': "..."' (or '')."""
        body = err.body
        text: object = body
        if isinstance(body, dict):
            text = body.get("message") or body.get("error")
        return self._scrubbed(text, limit)

    def _scrubbed(self, text: object, limit: int = _MAX_UPSTREAM_DETAIL) -> str:
        """Upstream text fit for users: secrets removed, shortened, as ': "..."'."""
        if not isinstance(text, str) or not text.strip():
            return ""
        text = " ".join(text.split())
        text = text.replace(self._api_key, "[redacted]")
        text = _SECRET_PATTERN.sub("[redacted]", text)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return f': "{text}"'


# How OpenAI (`context_length_exceeded`), vLLM ("maximum context length"),
# llama.cpp (`exceed_context_size_error`), LM Studio and Hugging Face TGI (a 422:
# "`inputs` tokens + `max_new_tokens` must be <= 4096", "`inputs` must have
# less than 4096 tokens") say a prompt is too long.
_CONTEXT_ADVICE = (
    "the question, the session's history and the knowledge passages do not fit the model's context: ask a "
    "shorter question or start a new session (operators: lower the agent's max tokens, "
    "COMBO_PROMPT_HISTORY_CHARS or COMBO_RETRIEVAL_TOP_K)"
)
_CONTEXT_PATTERN = re.compile(
    r"(?i)context[ _](?:length|size|window)|maximum context|prompt is too long|too many (?:input )?tokens"
    r"|`?inputs?`? tokens \+ `?max_new_tokens`? must be|`?inputs`? must have less than \d+ tokens"
)


def _context_exceeded(body: object) -> bool:
    """Whether an upstream's 4xx error body says the prompt does not fit the model's context window."""
    if isinstance(body, dict):
        text = " ".join(str(body.get(key) or "") for key in ("code", "type", "message"))
    else:
        text = body if isinstance(body, str) else ""
    return bool(_CONTEXT_PATTERN.search(text))


def _loggable_cause(err: Exception) -> Exception | None:
    """`err` if it may be chained (and so logged), None if its text could hold a secret.

    The SDK's error text repeats the upstream's body, and some servers echo
    the key there; the scrubbed part of it is already in our own message.
    """
    if isinstance(err, openai.APIError) and err.body is not None:
        return None
    return err


class _SDKSource:
    """The body of an answer the SDK's client opened."""

    def __init__(self, opening: Any, http_response: Any) -> None:
        self._opening = opening
        self._response = http_response
        self.event_stream = http_response.headers.get("content-type", "").lower().startswith("text/event-stream")
        self._chunks = http_response.aiter_bytes()
        self._parser = SSEParser()
        self._ended = False

    async def body(self) -> bytes:
        return await self._response.aread()

    async def events(self) -> list[bytes]:
        while not self._ended:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
                return self._parser.finish()
            events = self._parser.feed(chunk)
            if events:
                return events
        return []

    async def aclose(self, drain: bool) -> None:
        try:
            if drain:
                # Read to the end so the HTTP/1.1 connection goes back to the pool.
                async with asyncio.timeout(_DRAIN_AFTER_DONE):
                    while await self.events():
                        pass
        except Exception:  # noqa: BLE001 - the answer is complete already
            pass
        try:
            await self._opening.__aexit__(None, None, None)
        except Exception:  # noqa: BLE001 - already failing or closing
            pass


def _replayed(body: bytes) -> Callable[[], Awaitable[list[bytes]]]:
    """`events` for a whole body of server-sent events: all of them, then []."""
    parser = SSEParser()
    batches = [parser.feed(body) + parser.finish()]

    async def events() -> list[bytes]:
        return batches.pop() if batches else []

    return events


class _LeanSource:
    """The body of an answer `wire` opened."""

    def __init__(self, conn: wire.Exchange, response: wire.Response) -> None:
        self._conn = conn
        self.event_stream = response.headers.get("content-type", "").lower().startswith("text/event-stream")

    async def body(self) -> bytes:
        return await self._conn.read()

    async def events(self) -> list[bytes]:
        return await self._conn.events()

    async def aclose(self, drain: bool) -> None:
        conn = self._conn
        if drain:
            try:
                async with asyncio.timeout(_DRAIN_AFTER_DONE):
                    while await conn.events():
                        pass
            except Exception:  # noqa: BLE001 - the answer is complete already
                pass
        conn.release()  # pooled again only when the body was read to its end


def _is_error(event: dict) -> bool:
    """`{"error": ...}`, or vLLM's `{"object": "error", "message": ...}`."""
    return bool(event.get("error")) or event.get("object") == "error"


def _text(content: object) -> str:
    """A message's content as text: a string, or the text parts of a list of parts (as some servers send).

    Anything else is a malformed answer (ValueError). Parts other than text
    (a reasoning model's "thinking", say) are not part of the answer.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(
            part["text"] for part in content if part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    raise ValueError(f"the content is a {type(content).__name__}, not text")


def _loads(payload: bytes) -> Any:
    """`json.loads(payload.decode("utf-8"))`: parsed by orjson, judged by `json` when orjson refuses.

    One event per token, so this runs tens of thousands of times a second
    under load; orjson parses a chunk in under half the time of the standard
    library. What orjson refuses (NaN, nesting deeper than it allows, invalid
    UTF-8) goes to `json.loads`, which parses or fails as it always did. One
    difference remains: orjson reads an integer beyond 64 bits as a float,
    where `json` keeps it exact; no field read here can tell (the text, the
    finish reason, token counts, which `_count` takes only up to 2**31 - 1).

    Bytes that are not UTF-8 (a server that cut a character in two, or wrote
    Latin-1) become U+FFFD, as the SSE standard's UTF-8 decoding and httpx's
    text decoding have it: one bad byte does not cost the whole answer; only
    an event that is still not JSON then is a malformed answer. Only this
    rare path decodes: well-formed events never leave orjson.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload.decode("utf-8", "replace"))  # the same text as a strict decode when it is UTF-8


# The largest count a message's token fields hold on every supported database.
_MAX_COUNT = 2**31 - 1


def _usage(reported: object) -> Usage | None:
    if not isinstance(reported, dict):
        return None
    return Usage(_count(reported.get("prompt_tokens")), _count(reported.get("completion_tokens")))


def _count(value: object) -> int | None:
    """A token count as reported, or None when it is not one (a string, a negative or absurd number)."""
    if type(value) is int and 0 <= value <= _MAX_COUNT:
        return value
    return None


def _aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _origin(url: str) -> str:
    """`scheme://host[:port]` of an absolute http(s) URL, without credentials, path or query; else ''."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _retry_after(err: openai.APIStatusError) -> float | None:
    value = err.response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs, not worth parsing
    return seconds if seconds >= 0 else None
