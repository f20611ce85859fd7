"""POST /v1/combo/agents/{agent_id}/completions, both modes, on one async path.

Under daphne the route is served by `completions_asgi`, a plain ASGI app in
front of Django (combo.routing): no sync middleware hops, no thread per
stream, and `http.disconnect` is seen while streaming. `completions_view` is the
same handler for Django's own request path (test client, runserver, WSGI).

SSE frames (API.md): `event: message` with {"answer": <delta>, "reference": [...]},
then `event: done` with {"session_id": ...}; a failure after the first byte is
`event: error` carrying the envelope, then `event: done`. Deltas that are ready
together go out as one frame, so a busy process falls behind by frames, not tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.services import Principal, authenticate_bearer
from agents.completions import END, CompletionRun, Prepared, completion_prepare
from agents.serializers import CompletionRequestSerializer
from combo.api.envelope import error_body, success
from combo.api.exceptions import _classify
from combo import ratelimit, shutdown
from combo.api.middleware import new_request_id
from combo.errors import ComboError, ErrorCode

logger = logging.getLogger("combo.completions")


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


def _json(data) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _error_reply(error: ComboError, request_id: str, headers: dict[str, str] | None = None) -> Reply:
    body = error_body(error.error, error.message, request_id, errors=error.errors, extra=error.extra)
    out = {"Content-Type": "application/json", **error.headers, **(headers or {})}
    if error.error.status == 401:
        out["WWW-Authenticate"] = 'Bearer realm="combo"'
    return Reply(status=error.error.status, headers=out, body=_json(body))


def _authorize_and_prepare(authorization: str | None, body: bytes, agent_id: str, client_ip: str):
    """The whole pre-stream step, in one thread hop: auth, limits, validation, database.

    The completions budget is spent after authentication and before validation,
    as the DRF throttle does for every other operation (docs/rate-limits.md);
    a stream counts once, when it starts.
    """
    principal: Principal | None = authenticate_bearer(authorization)
    if principal is None:
        raise ComboError(ErrorCode.UNAUTHENTICATED)
    decision = ratelimit.check(ratelimit.COMPLETIONS, principal=principal, client_ip=client_ip)
    if decision is not None and not decision.allowed:
        raise decision.error()
    limit_headers = ratelimit.headers(decision)
    try:
        payload = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise ComboError(ErrorCode.MALFORMED_BODY, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ComboError(ErrorCode.MALFORMED_BODY, "The request body must be a JSON object.")
    serializer = CompletionRequestSerializer(data=payload)
    if not serializer.is_valid():
        raise _classify(_validation_error(serializer.errors))
    data = serializer.validated_data
    prepared = completion_prepare(
        owner=principal.user, agent_id=agent_id, question=data["question"], session_id=data.get("session_id")
    )
    return prepared, data["stream"], limit_headers


def _validation_error(errors):
    from rest_framework.exceptions import ValidationError

    return ValidationError(errors)


async def handle_completion(
    *, method: str, headers: Mapping[str, str], body: bytes, agent_id: str, request_id: str, client_ip: str
) -> Reply:
    if method != "POST":
        return _error_reply(ComboError(ErrorCode.METHOD_NOT_ALLOWED), request_id, {"Allow": "POST"})
    if shutdown.draining:
        return _error_reply(
            ComboError(ErrorCode.SHUTTING_DOWN, "This server process is shutting down; retry the request."),
            request_id,
            {"Retry-After": "1"},
        )
    content_type = headers.get("content-type", "")
    if body.strip() and not content_type.startswith("application/json"):
        return _error_reply(
            ComboError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json."), request_id
        )
    try:
        prepared, stream, limit_headers = await sync_to_async(_authorize_and_prepare)(
            headers.get("authorization"), body, agent_id, client_ip
        )
    except ComboError as exc:
        return _error_reply(exc, request_id)
    except Exception:
        logger.exception("completion request failed before streaming")
        return _error_reply(ComboError(ErrorCode.INTERNAL_ERROR), request_id)

    run = CompletionRun(prepared)
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
    return Reply(status=200, headers=sse_headers, stream=sse_frames(run, prepared, request_id))


def result_payload(prepared: Prepared, run: CompletionRun) -> dict:
    usage = None
    if run.usage is not None:
        usage = {"prompt_tokens": run.usage.prompt_tokens, "completion_tokens": run.usage.completion_tokens}
    return {
        "answer": run.answer,
        "reference": prepared.references,
        "session_id": str(prepared.session_id),
        "message_id": str(prepared.message_id),
        "usage": usage,
    }


def _frame(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _json({"type": event, **data}) + b"\n\n"


async def sse_frames(run: CompletionRun, prepared: Prepared, request_id: str) -> AsyncIterator[bytes]:
    # Started here, in the loop that sends the stream: under daphne that is the
    # server's loop; under a sync server Django drains the stream in a loop of
    # its own, and a task started in the view's (by then closed) loop would die.
    run.start()
    heartbeat = settings.COMBO_SSE_HEARTBEAT_SECONDS
    queue = run.queue
    finished = False
    while not finished:
        try:
            item = await asyncio.wait_for(queue.get(), timeout=heartbeat)
        except TimeoutError:
            yield b": keep-alive\n\n"
            continue
        pieces = []
        while True:
            if item is END:
                finished = True
                break
            pieces.append(item)
            if queue.empty():
                break
            item = queue.get_nowait()
        if pieces or (finished and run.error is None):
            reference = prepared.references if finished else []
            yield _frame("message", {"answer": "".join(pieces), "reference": reference})
    if run.error is not None:
        body = error_body(run.error.error, run.error.message, request_id)
        yield _frame("error", body)
    done = {"session_id": str(prepared.session_id), "message_id": str(prepared.message_id)}
    if run.usage is not None:
        done["usage"] = {"prompt_tokens": run.usage.prompt_tokens, "completion_tokens": run.usage.completion_tokens}
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
    out_headers = [(b"x-request-id", request_id.encode())]
    out_headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in reply.headers.items()]
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
        client_ip=ratelimit.request_client_ip(request),
    )
    if reply.stream is not None:
        response = StreamingHttpResponse(reply.stream, status=reply.status)
    else:
        response = HttpResponse(reply.body, status=reply.status)
    for key, value in reply.headers.items():
        response[key] = value
    return response
