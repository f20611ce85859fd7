"""Shared pieces for the webhook tests: an agent, a webhook made through the API,
a signed-event poster, the task worker, and a real HTTP receiver.

Agents answer with the built-in offline provider (no COMBO_LLM_BASE_URL in
tests), which is deterministic: it says no language model is configured and
quotes the question.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.services import agent_create
from integrations.signing import sign
from tests.worker import run_worker

EVENTS = "/v1/integrations/webhooks/{}/events"
OFFLINE_NOTICE = "No language model is configured for this deployment"


@pytest.fixture
def alice_agent(alice):
    return agent_create(owner=alice.user, name="Reviewer")


@pytest.fixture
def bob_agent(bob):
    return agent_create(owner=bob.user, name="Bob's agent")


@dataclass
class MadeWebhook:
    id: str
    secret: str
    data: dict


@pytest.fixture
def make_webhook(api, alice, alice_agent):
    """Create a webhook as alice through the API; returns its id, secret and response data."""

    def make(**fields) -> MadeWebhook:
        body = {"name": "CI", "agent_id": str(alice_agent.id), **fields}
        status, envelope, _ = api.post("/v1/integrations/webhooks", body, auth=alice.key_auth)
        assert status == 201, envelope
        data = envelope["data"]
        return MadeWebhook(id=data["id"], secret=data["secret"], data=data)

    return make


@pytest.fixture
def post_event(api):
    """POST raw bytes to a webhook's events endpoint, signing with `secret` unless `signature` is given."""

    def post(webhook_id, body, *, secret=None, signature=None, delivery=None, content_type="application/json"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {}
        if signature is None and secret is not None:
            signature = sign(secret, raw)
        if signature is not None:
            headers["HTTP_X_COMBO_SIGNATURE"] = signature
        if delivery is not None:
            headers["HTTP_X_COMBO_DELIVERY"] = delivery
        return api.call("POST", EVENTS.format(webhook_id), raw=raw, content_type=content_type, **headers)

    return post


@pytest.fixture
def drain():
    return run_worker


@pytest.fixture
def allow_loopback(settings):
    """The operator allowlist that lets deliveries reach the local test receiver."""
    settings.COMBO_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 answering with `statuses` in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0  # seconds to wait before answering
    trickle: float = 0.0  # seconds between the bytes of a long answer body (a slow receiver)
    reply: bytes | None = None  # the answer's body (default: {"ok": ...})
    slow_head: float = 0.0  # seconds between the bytes of the status line and headers (a slower receiver)
    headers: dict = field(default_factory=dict)  # extra headers on every answer
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def next_status(self) -> int:
        index = min(len(self.received) - 1, len(self.statuses) - 1)
        return self.statuses[index]


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            code = state.next_status()
            if state.delay:
                time.sleep(state.delay)
            if state.slow_head:
                head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 400 + b"\r\nContent-Length: 0\r\n\r\n"
                for byte in head:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client hung up
                        return
                    time.sleep(state.slow_head)
                return
            reply = json.dumps({"ok": code < 300}).encode()
            if state.trickle:
                reply = json.dumps({"ok": code < 300, "padding": "x" * 4096}).encode()
            if state.reply is not None:
                reply = state.reply
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not state.trickle:
                self.wfile.write(reply)
                return
            for byte in reply:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client hung up
                    return
                time.sleep(state.trickle)

        def log_message(self, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/combo?token=abc"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
