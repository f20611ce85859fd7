"""The proxy: a minimal hand-rolled Starlette proxy of the same stream (`bench/run.py --app proxy`).

The yardstick issue 3 names: what a plain relay of the upstream's stream
costs, with none of Combo's work (no auth, no database, no limits) but a real
upstream request. One `httpx.AsyncClient` per process, each upstream token
re-sent as one SSE frame in the shape the completion route sends, as most
hand-written relays do. Same URL and frames as the product, so the load
generator checks it like Combo; set up from the variables the bench gives the
server (COMBO_LLM_BASE_URL, COMBO_LLM_API_KEY, COMBO_LLM_MODEL).
"""

from __future__ import annotations

import json
import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

BASE_URL = os.environ.get("COMBO_LLM_BASE_URL", "http://127.0.0.1:8000/v1").rstrip("/")
API_KEY = os.environ.get("COMBO_LLM_API_KEY", "none")
MODEL = os.environ.get("COMBO_LLM_MODEL", "fake")

client = httpx.AsyncClient(
    timeout=60.0, limits=httpx.Limits(max_connections=None, max_keepalive_connections=2000)
)


def frame(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode()


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def completions(request: Request) -> StreamingResponse:
    question = (await request.json())["question"]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "stream": True,
    }

    async def relay():
        async with client.stream(
            "POST", f"{BASE_URL}/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as upstream:
            async for line in upstream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                choices = json.loads(data).get("choices") or []
                delta = choices[0].get("delta", {}).get("content") if choices else None
                if delta:
                    yield frame("message", {"answer": delta, "reference": []})
        yield frame("done", {"session_id": "proxy"})

    return StreamingResponse(
        relay(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


application = Starlette(
    routes=[
        Route("/v1/health", health),
        Route("/v1/combo/agents/{agent_id}/completions", completions, methods=["POST"]),
    ]
)
