"""Oversized bodies are refused at the ASGI edge of a live daphne, before buffering."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.live import LiveCombo


@pytest.fixture(scope="module")
def live():
    combo = LiveCombo()
    combo.migrate()
    combo.key = combo.create_key("alice")
    combo.url = combo.start()
    yield combo
    combo.stop()


def raw_request(live, head: str, body_chunks: list[bytes]) -> tuple[int, dict]:
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                head_part, _, rest = data.partition(b"\r\n\r\n")
                if b"content-length" in head_part.lower():
                    length = int([line.split(b":")[1] for line in head_part.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")][0])
                    if len(rest) >= length:
                        break
    status = int(data.split(b" ", 2)[1])
    body = data.partition(b"\r\n\r\n")[2]
    return status, json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])


def test_a_declared_oversized_body_is_refused_at_the_edge(live):
    body = b"x" * (1024 * 1024 + 10)
    head = (f"POST /v1/combo/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    status, envelope = raw_request(live, head, [body])
    assert (status, envelope["code"]) == (413, 10070)
    assert envelope["data"]["request_id"]


def test_a_refusal_that_says_connection_close_closes_the_connection(live):
    body = b"x" * (1024 * 1024 + 10)
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST /v1/combo/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while part := sock.recv(65536):  # to the server's close (a timeout if it keeps the connection open)
            data += part
    assert data.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in data
    assert data.endswith(b"}")


def test_a_chunked_body_is_cut_off_at_the_limit(live):
    head = (f"POST /v1/combo/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 20 + [b"0\r\n\r\n"]
    status, envelope = raw_request(live, head, chunks)
    assert (status, envelope["code"]) == (413, 10070)
    assert "Reviewer" not in live.shell("from agents.models import Agent; print(list(Agent.objects.values_list('name', flat=True)))")


def test_a_chunked_body_under_the_limit_reaches_the_view_whole(live):
    head = (f"POST /v1/combo/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    body = json.dumps({"name": "Sent in chunks", "instructions": "x" * 5000}).encode()
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:1000], body[1000:])] + [b"0\r\n\r\n"]
    status, envelope = raw_request(live, head, chunks)
    assert status == 201, envelope
    assert envelope["data"]["name"] == "Sent in chunks" and len(envelope["data"]["instructions"]) == 5000


@pytest.fixture(scope="module")
def webhook(live):
    """A webhook of the key's owner, made through the API: its id."""
    auth = {"Authorization": f"Bearer {live.key}"}
    agent = httpx.post(f"{live.url}/v1/combo/agents", json={"name": "Hooked"}, headers=auth).json()["data"]
    made = httpx.post(f"{live.url}/v1/integrations/webhooks", json={"name": "CI", "agent_id": agent["id"]},
                      headers=auth)
    assert made.status_code == 201, made.text
    return made.json()["data"]["id"]


def rejected_deliveries(live, webhook_id: str) -> list[tuple]:
    listed = httpx.get(f"{live.url}/v1/integrations/webhooks/{webhook_id}/deliveries",
                       headers={"Authorization": f"Bearer {live.key}"}).json()["data"]["items"]
    return [(item["status"], (item["reason"] or {}).get("code"), item["body_size"]) for item in listed]


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_an_oversized_webhook_event_is_refused_and_stored_as_a_rejected_delivery(live, webhook, chunked):
    size = 1024 * 1024 + 10
    before = len(rejected_deliveries(live, webhook))
    head = f"POST /v1/integrations/webhooks/{webhook}/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    if chunked:
        piece = b"x" * 65536
        chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 17 + [b"0\r\n\r\n"]
        status, envelope = raw_request(live, head + "Transfer-Encoding: chunked\r\n\r\n", chunks)
    else:
        status, envelope = raw_request(live, head + f"Content-Length: {size}\r\n\r\n", [b"x" * size])
    assert (status, envelope["code"]) == (413, 10070)
    deliveries = rejected_deliveries(live, webhook)
    assert len(deliveries) == before + 1
    status_, code, body_size = deliveries[0]
    assert (status_, code) == ("rejected", 10070) and body_size > 1024 * 1024


def declared_only(live, path: str, size: int) -> tuple[int, dict]:
    """A body declared larger than any limit (past the cap inside daphne); only its start is sent."""
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n")
    return raw_request(live, head, [b"x" * 65536])


def test_a_huge_webhook_event_is_refused_with_the_events_limit(live, webhook):
    # Past the upload limit too, so daphne itself refuses it: the message names the events limit.
    status, envelope = declared_only(live, f"/v1/integrations/webhooks/{webhook}/events", 22 * 1024 * 1024)
    assert (status, envelope["code"]) == (413, 10070)
    assert envelope["message"] == "The event body is over the limit of 1048576 bytes.", envelope
    assert envelope["data"]["request_id"]


def test_a_huge_json_body_is_refused_with_the_json_limit(live):
    status, envelope = declared_only(live, "/v1/combo/agents", 22 * 1024 * 1024)
    assert (status, envelope["code"]) == (413, 10070)
    assert envelope["message"] == "The request body is over the limit of 1048576 bytes.", envelope


def test_status_lines_carry_their_reason_phrase(live):
    """Twisted's table lacks some codes daphne sends, 429 among them."""
    host, port = live.url.removeprefix("http://").split(":")
    lines = []
    for _ in range(11):  # the login family allows 10 tries a minute per address
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            body = b'{"username": "nobody", "password": "x"}'
            sock.sendall(b"POST /v1/auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            lines.append(sock.makefile("rb").readline().strip())
    assert lines[0] == b"HTTP/1.1 401 Unauthorized"
    assert lines[-1] == b"HTTP/1.1 429 Too Many Requests"


@pytest.mark.parametrize(("path", "size", "sent"), [
    ("/v1/combo/agents", 1024 * 1024 + 10, True),  # over the JSON limit: refused in front of the application
    ("/v1/combo/files", 64 * 1024 * 1024, False),  # over every limit: refused in the server, no body read
])
def test_a_refusal_at_the_edge_is_not_cached_either(live, path, size, sent):
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode())
        if sent:
            sock.sendall(b"x" * size)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            assert part, data
            data += part
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 413"), head
    assert b"\r\ncache-control: no-store" in head, head
