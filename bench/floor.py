"""The floor: the completion route's stream with none of Combo's work (`bench/run.py --app floor`).

Same URL, same SSE frames, same tokens at the same pace, but no auth, no
database and no upstream: the tokens come from a timer. Served by the same
ASGI server as the product, its numbers are what the server itself costs;
the difference between these and Combo's numbers is what Combo costs.
"""

from __future__ import annotations

import asyncio
import json
import os

from tests.fakes.openai_server import answer_tokens

TOKENS = int(os.environ.get("BENCH_FLOOR_TOKENS", "64"))
INTERVAL = float(os.environ.get("BENCH_FLOOR_INTERVAL", "0.02"))
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _frame(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {_encode({'type': event, **data})}\n\n".encode()


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/v1/health":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        return
    question = json.loads(body)["question"]
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
    })
    for index, token in enumerate(answer_tokens(question, TOKENS)):
        if index:
            await asyncio.sleep(INTERVAL)
        await send({"type": "http.response.body", "body": _frame("message", {"answer": token, "reference": []}),
                    "more_body": True})
    await send({"type": "http.response.body", "body": _frame("done", {"session_id": "floor"}), "more_body": True})
    await send({"type": "http.response.body", "body": b""})
