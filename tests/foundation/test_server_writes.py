"""combo.server sends a write at once when nothing waits to be sent; what the kernel cannot take yet follows, in order."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.live import LiveCombo


@pytest.fixture(scope="module")
def url():
    combo = LiveCombo()
    combo.migrate()
    try:
        yield combo.start()
    finally:
        combo.stop()


def _raw_get(url: str, path: str, *, read_after: float) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # A small receive window and a late reader: the server's first send
        # cannot take the whole body, so the rest waits in Twisted's buffer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        time.sleep(read_after)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _body(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = bytearray(), body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        body = bytes(out)
    return headers, body


def test_a_body_larger_than_the_socket_buffers_arrives_whole_to_a_late_reader(url):
    raw = _raw_get(url, "/v1/openapi.json", read_after=0.5)
    headers, body = _body(raw)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert len(body) > 256 * 1024  # far more than one send to a 4 KiB window takes
    if "content-length" in headers:
        assert len(body) == int(headers["content-length"])
    assert json.loads(body)["openapi"].startswith("3.")
