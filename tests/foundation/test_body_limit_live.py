"""Oversized bodies are refused at the ASGI edge of a live daphne, before buffering."""

from __future__ import annotations

import json
import socket

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


def test_a_chunked_body_is_cut_off_at_the_limit(live):
    head = (f"POST /v1/combo/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 20 + [b"0\r\n\r\n"]
    status, envelope = raw_request(live, head, chunks)
    assert (status, envelope["code"]) == (413, 10070)
    assert "Reviewer" not in live.shell("from agents.models import Agent; print(list(Agent.objects.values_list('name', flat=True)))")
