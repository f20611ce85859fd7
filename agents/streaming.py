"""POST /v1/combo/agents/{agent_id}/completions, both modes, on one async path.

Under daphne the route is served by `completions_asgi`, a plain ASGI app in
front of Django (combo.routing): no sync middleware hops, no thread per
stream, and `http.disconnect` is seen while streaming. `completions_view` is the
same handler for Django's own request path (test client, runserver, WSGI).

SSE frames (API.md): `event: message` with {"answer": <delta>, "reference": [...]},
then `event: done` with {"session_id": ...}; a failure after the first byte is
`event: error` carrying the envelope, then `event: done`. Deltas that are ready
together go out as one frame, so a busy process falls behind by frames, not tokens.

Before the first byte, a request's checks (API key, rate limit, validation,
agent, session and history: reads only) run in a batch with the requests that
arrived alongside it, in one thread hop (combo.batching.CheckThenRecord). The
answer starts as soon as they are done, while the same hop writes the
question's rows; its first text waits for them, so an answer is never shown
for a question that was not saved.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.request import MediaType
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiKey
from accounts.services import authenticate_bearers
from agents.completions import (
    CompletionRun,
    Prepared,
    PrepareSpec,
    completion_check_many,
    completion_record_many,
)
from agents.serializers import CompletionRequestSerializer
from combo import ratelimit, shutdown
from combo.api.envelope import error_body, success
from combo.api.exceptions import _classify
from combo.api.middleware import new_request_id
from combo.api.parsers import MalformedBody, loads_object
from combo.batching import CheckThenRecord
from combo.errors import ComboError, ErrorCode, challenge, database_unavailable, log_failure

logger = logging.getLogger("combo.completions")


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


# One encoder for every frame: json.dumps() with non-default options builds a
# new JSONEncoder per call, which doubles the cost of a frame's JSON.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json(data) -> bytes:
    return _encode(data).encode()


def _error_reply(error: ComboError, request_id: str, headers: dict[str, str] | None = None) -> Reply:
    body = error_body(error.error, error.message, request_id, errors=error.errors, extra=error.extra)
    out = {"Content-Type": "application/json", **error.headers, **(headers or {})}
    if error.error.status == 401:
        out["WWW-Authenticate"] = challenge(error.error)
    return Reply(status=error.error.status, headers=out, body=_json(body))


@dataclass(frozen=True)
class _Ask:
    authorization: str | None
    body: bytes
    agent_id: str
    client_ip: str = ""
    content_type: str = "application/json"


def _authorize_and_check_many(asks: list[_Ask]) -> list[tuple | BaseException]:
    """The pre-stream checks for a batch of requests: auth, limits, validation, reads.

    Per request, in this order, the first failure is its answer: credentials,
    rate limit, body (its media type, then its fields), then agent and
    session: the order of every other operation (DRF authenticates and
    throttles before it parses). Each result is
    ((prepared, stream, limit_headers), record) or the error for that request
    alone; nothing is written (the records are, by `completion_record_many`).

    The completions budget is spent after authentication and before validation,
    as the DRF throttle does for every other operation (docs/rate-limits.md);
    a stream counts once, when it starts.
    """
    results: list[tuple | BaseException | None] = [None] * len(asks)
    principals = authenticate_bearers([ask.authorization for ask in asks], defer_touch=True)
    authorized = []
    for index, principal in enumerate(principals):
        if isinstance(principal, ComboError):
            results[index] = principal
        elif principal is None:
            results[index] = ComboError(ErrorCode.UNAUTHENTICATED)
        else:
            authorized.append((index, principal))
    decisions = ratelimit.check_many(
        ratelimit.COMPLETIONS, [(principal, asks[index].client_ip) for index, principal in authorized]
    )
    accepted: list[tuple[int, PrepareSpec, bool, dict[str, str], ApiKey | None]] = []
    for (index, principal), decision in zip(authorized, decisions):
        ask = asks[index]
        limit_headers: dict[str, str] = {}
        try:
            if isinstance(decision, ComboError):
                raise decision
            if decision is not None and not decision.allowed:
                raise decision.error()
            limit_headers = ratelimit.headers(decision)
            if ask.body.strip() and not _is_json(ask.content_type):
                raise ComboError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")
            data = _validated(ask.body)
            spec = PrepareSpec(
                owner=principal.user, agent_id=ask.agent_id, question=data["question"],
                session_id=data.get("session_id"),
            )
            accepted.append((index, spec, data["stream"], limit_headers, principal.api_key))
        except ComboError as exc:
            results[index] = _counted(exc, limit_headers)
        except Exception as exc:  # noqa: BLE001 - this request fails, not the batch
            results[index] = exc  # logged by the request it is handed to (handle_completion)
    if accepted:
        checked = completion_check_many([spec for _, spec, _, _, _ in accepted])
        for (index, _, stream, limit_headers, api_key), result in zip(accepted, checked):
            if isinstance(result, BaseException):
                results[index] = _counted(result, limit_headers) if isinstance(result, ComboError) else result
            else:
                prepared, record = result
                record.api_key = api_key
                results[index] = ((prepared, stream, limit_headers), record)
    return results  # type: ignore[return-value]


_ANSWERS = ("application/json", "text/event-stream")


def _acceptable(accept: str | None) -> bool:
    """Whether an Accept header admits one of the two media types this route answers with (none: any)."""
    if accept is None or not accept.strip():
        return True
    types = [MediaType(part) for part in accept.split(",") if part.strip()]
    return any(accepted.match(answer) for accepted in types for answer in _ANSWERS)


def _counted(error: ComboError, limit_headers: dict[str, str]) -> ComboError:
    """A request refused after it was counted still says what is left of its budget (docs/rate-limits.md)."""
    if limit_headers:
        error.headers = {**limit_headers, **error.headers}
    return error


def _is_json(content_type: str) -> bool:
    """`application/json`, in any case, with or without parameters: what DRF's parser accepts elsewhere."""
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _validated(body: bytes) -> dict:
    try:
        payload = loads_object(body)
    except MalformedBody as exc:
        raise ComboError(ErrorCode.MALFORMED_BODY, str(exc)) from None
    data = _plainly_valid(payload)
    if data is not None:
        return data
    serializer = CompletionRequestSerializer(data=payload)
    if not serializer.is_valid():
        raise _classify(_validation_error(serializer.errors))
    return serializer.validated_data


_FIELDS = frozenset({"question", "session_id", "stream"})
_SURROGATE = re.compile("[\ud800-\udfff]")


def _plainly_valid(payload: dict) -> dict | None:
    """The serializer's answer for the ordinary request, without DRF (~150 us less per request).

    Only for payloads the serializer would accept unchanged but for the
    question's surrounding whitespace; None for anything else, which the
    serializer then judges and words the errors for.
    """
    if not payload.keys() <= _FIELDS:
        return None
    question = payload.get("question")
    stream = payload.get("stream", False)
    session_id = payload.get("session_id")
    if type(question) is not str or type(stream) is not bool:
        return None
    question = question.strip()
    if not question or len(question) > settings.COMBO_MAX_QUESTION_CHARS or "\x00" in question:
        return None
    if _SURROGATE.search(question):
        return None
    if session_id is not None:
        if type(session_id) is not str:
            return None
        try:
            session_id = uuid.UUID(hex=session_id)
        except ValueError:
            return None
    return {"question": question, "stream": stream, "session_id": session_id}


def _orphan(result: tuple, recorded: asyncio.Future) -> None:
    """A request whose client left while it was being checked: generate and save it anyway."""
    CompletionRun(result[0], recorded=recorded).start()


# Checks in batches; the same hop then writes the batch's rows while the
# answers start (a run shows no text before its question is saved). Up to
# 500 a batch: a burst's checks then come before its writes, which the
# first text waits for but the upstream request does not (alternating
# `make bench` rounds against batches of 100: N=500 TTFE p50 6-12% lower).
_prepare = CheckThenRecord(_authorize_and_check_many, completion_record_many, orphan=_orphan, max_batch=500)


def _validation_error(errors):
    from rest_framework.exceptions import ValidationError

    return ValidationError(errors)


async def handle_completion(
    *, method: str, headers: Mapping[str, str], body: bytes, agent_id: str, request_id: str, client_ip: str,
    same_loop: bool = True,
) -> Reply:
    """The reply to one completion request.

    `same_loop`: the reply's stream is sent from this event loop, so the
    answer can start while the question's rows are written. Otherwise (a
    sync server drains the stream in a loop of its own) they are written first.
    """
    if method != "POST":
        return _error_reply(ComboError(ErrorCode.METHOD_NOT_ALLOWED), request_id, {"Allow": "POST"})
    if shutdown.draining:
        # Refused before the credential and the rate limit are looked at: it
        # spends no budget and carries no X-RateLimit headers. The connection
        # is closed after it, so the client's retry opens a new one, which a
        # load balancer (or `serve`'s shared socket) can give another process.
        return _error_reply(
            ComboError(ErrorCode.SHUTTING_DOWN, "This server process is shutting down; retry the request."),
            request_id,
            {"Retry-After": "1", "Connection": "close"},
        )
    if not _acceptable(headers.get("accept")):
        return _error_reply(
            ComboError(ErrorCode.NOT_ACCEPTABLE, "This operation answers application/json or text/event-stream."),
            request_id,
        )
    try:
        (prepared, stream, limit_headers), recorded = await _prepare(
            _Ask(headers.get("authorization"), body, agent_id, client_ip, headers.get("content-type", ""))
        )
    except ComboError as exc:
        return _error_reply(exc, request_id)
    except Exception as exc:  # noqa: BLE001 - logged (log_failure) and answered with the envelope
        log_failure(logger, exc, f"/v1/combo/agents/{agent_id}/completions (before streaming)", request_id)
        return _error_reply(database_unavailable(exc) or ComboError(ErrorCode.INTERNAL_ERROR), request_id)

    if not same_loop:
        await asyncio.wait([recorded])
        if recorded.cancelled() or recorded.exception() is not None:
            failure = None if recorded.cancelled() else recorded.exception()
            if isinstance(failure, ComboError):  # its session or agent was deleted meanwhile
                return _error_reply(_counted(failure, limit_headers), request_id)
            unavailable = database_unavailable(failure) if failure is not None else None
            if unavailable is not None:
                return _error_reply(_counted(unavailable, limit_headers), request_id)
            return _error_reply(ComboError(ErrorCode.INTERNAL_ERROR), request_id)
        recorded = None
    run = CompletionRun(prepared, recorded=recorded)
    if not stream:
        run.start()
        await run.wait()
        if run.error is not None:
            return _error_reply(
                run.error, request_id, limit_headers | {"X-Combo-Session-Id": str(prepared.session_id)}
            )
        data = result_payload(prepared, run)
        return Reply(
            status=200, headers={"Content-Type": "application/json", **limit_headers}, body=_json(success(data))
        )
    sse_headers = {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        **limit_headers,
    }
    if same_loop:
        run.start()  # the upstream request goes out before the response's head
        return Reply(status=200, headers=sse_headers, stream=sse_frames(run, prepared, request_id))
    return Reply(status=200, headers=sse_headers, stream=_started(run, sse_frames(run, prepared, request_id)))


async def _started(run: CompletionRun, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Start the run in the loop that sends its stream, then pass the frames on.

    For a sync server, which drains the stream in a loop of its own: a task
    started in the view's (by then closed) loop would die with it.
    """
    run.start()
    try:
        async for frame in frames:
            yield frame
    finally:
        await frames.aclose()


def result_payload(prepared: Prepared, run: CompletionRun) -> dict:
    return {
        "answer": run.answer,
        "reference": prepared.references,
        "session_id": str(prepared.session_id),
        "message_id": str(prepared.message_id),
        "usage": _usage(run),
        "finish_reason": run.finish_reason,
    }


def _usage(run: CompletionRun) -> dict | None:
    """The token counts the provider reported; None when it gave none (a finish reason alone is not usage)."""
    usage = run.usage
    if usage is None or (usage.prompt_tokens is None and usage.completion_tokens is None):
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def _frame(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _json({"type": event, **data}) + b"\n\n"


def _message_frame(answer: str, reference: list) -> bytes:
    """`_frame("message", {"answer": answer, "reference": reference})`, byte for byte.

    One per token under load: only the text is encoded (and the references,
    on the last frame), not a new dict around it.
    """
    return (
        b'event: message\ndata: {"type":"message","answer":' + _encode(answer).encode()
        + (b',"reference":[]}\n\n' if not reference else b',"reference":' + _json(reference) + b"}\n\n")
    )


async def sse_frames(run: CompletionRun, prepared: Prepared, request_id: str) -> AsyncIterator[bytes]:
    """The SSE frames of one run: everything generated since the last frame goes in the next."""
    heartbeat = settings.COMBO_SSE_HEARTBEAT_SECONDS
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    beat_due = False

    # One timer per stream, moved only when it fires, rather than a timeout
    # around every wait: a frame costs no timer operations.
    def beat() -> None:
        nonlocal timer, beat_due
        due = last_write + heartbeat
        if loop.time() >= due:
            beat_due = True
            run.wake()
            due = loop.time() + heartbeat
        timer = loop.call_at(due, beat)

    timer = loop.call_at(last_write + heartbeat, beat)
    sent = 0
    error = None
    try:
        while True:
            finished = run.finished.is_set()  # read before the parts: none can be missed
            parts = run.parts
            count = len(parts)
            if count > sent or (finished and run.error is None):
                answer = parts[sent] if count == sent + 1 else "".join(parts[sent:count])
                sent = count
                reference = prepared.references if finished else []
                last_write = loop.time()
                yield _message_frame(answer, reference)
            if finished:
                break
            if beat_due:
                beat_due = False
                last_write = loop.time()
                yield b": keep-alive\n\n"
                continue
            if len(run.parts) == sent and not run.finished.is_set():
                await run.changed()
        error = run.error
    except Exception:  # a frame that cannot be made: the stream still ends as API.md says
        logger.exception("completion %s: the stream failed", prepared.message_id)
        error = ComboError(ErrorCode.INTERNAL_ERROR)
    finally:
        timer.cancel()
    if error is not None:
        body = error_body(error.error, error.message, request_id, extra=error.extra)
        yield _frame("error", body)
    done = {"session_id": str(prepared.session_id), "message_id": str(prepared.message_id)}
    if (usage := _usage(run)) is not None:
        done["usage"] = usage
    done["finish_reason"] = run.finish_reason
    yield _frame("done", done)


# --- The ASGI app daphne serves ----------------------------------------------

async def _read_body(receive, limit: int) -> tuple[bytes | None, bool]:
    """(body, disconnected); body None when over the limit."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


@functools.cache
def _security_headers() -> tuple[tuple[bytes, bytes], ...]:
    """What Django's SecurityMiddleware and XFrameOptionsMiddleware add to every other response."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        policy = policy if isinstance(policy, str) else ",".join(policy)
        headers.append((b"referrer-policy", policy.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    headers.append((b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper().encode()))
    return tuple(headers)


async def completions_asgi(scope, receive, send):
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    request_id = new_request_id(headers.get("x-request-id"))
    agent_id = scope["url_route"]["kwargs"]["agent_id"]
    body, gone = await _read_body(receive, settings.API_MAX_JSON_BYTES)
    if gone:
        return
    if body is None:
        reply = _error_reply(ComboError(ErrorCode.PAYLOAD_TOO_LARGE), request_id)
    else:
        reply = await handle_completion(
            method=scope["method"], headers=headers, body=body, agent_id=agent_id, request_id=request_id,
            client_ip=ratelimit.scope_client_ip(scope),
        )
    out_headers = [(b"x-request-id", request_id.encode()), *_security_headers()]
    out_headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in reply.headers.items()]
    if "Cache-Control" not in reply.headers:
        out_headers.append((b"cache-control", b"no-store"))  # as every other /v1 answer (combo.api.middleware)
    await send({"type": "http.response.start", "status": reply.status, "headers": out_headers})
    if reply.stream is None:
        await send({"type": "http.response.body", "body": reply.body})
        return

    disconnected = asyncio.Event()

    async def watch():
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    frames = reply.stream
    try:
        async for frame in frames:
            if disconnected.is_set():
                break
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if not disconnected.is_set():
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        await frames.aclose()


# --- The same handler on Django's request path --------------------------------

@csrf_exempt
async def completions_view(request, agent_id):
    request_id = getattr(request, "request_id", None) or new_request_id(request.headers.get("X-Request-Id"))
    headers = {k.lower(): v for k, v in request.headers.items()}
    reply = await handle_completion(
        method=request.method, headers=headers, body=request.body, agent_id=str(agent_id), request_id=request_id,
        client_ip=ratelimit.request_client_ip(request), same_loop=False,
    )
    if reply.stream is not None:
        response = StreamingHttpResponse(reply.stream, status=reply.status)
    else:
        response = HttpResponse(reply.body, status=reply.status)
    for key, value in reply.headers.items():
        response[key] = value
    return response
