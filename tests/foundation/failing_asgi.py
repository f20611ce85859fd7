"""A test-only ASGI application: Combo's own, plus paths whose application fails before or while it answers.

Served by combo.server in tests/foundation/test_server_application_errors.py;
never part of the product. Combo's own application answers every request
(Django turns a view's exception into a 500 envelope itself), so these stand
for a fault below Django: an exception out of the ASGI callable, or an
application that never starts its answer.
"""

from __future__ import annotations

import asyncio

from combo.asgi import application as combo_application

SECRET = "secret-db-password=hunter2"


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/test/raise":
        raise RuntimeError(f"{SECRET} leaked in a traceback")
    if scope["type"] == "http" and scope["path"] == "/test/raise-midway":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"the first part", "more_body": True})
        raise RuntimeError(f"{SECRET} leaked in a traceback")
    if scope["type"] == "http" and scope["path"] == "/test/hang":
        await asyncio.sleep(60)  # longer than the server's --http-timeout
        return
    await combo_application(scope, receive, send)
