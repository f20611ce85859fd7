"""Conditional requests on the wire: a 304 from daphne is headers only, and the connection goes on."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.live import LiveCombo


@pytest.fixture(scope="module")
def live():
    combo = LiveCombo()
    combo.migrate()
    key = combo.create_key("owner")
    url = combo.start()
    try:
        yield url, key
    finally:
        combo.stop()


def _read_response(sock, buffered: bytes) -> tuple[str, dict[str, str], bytes, bytes]:
    """One response from a keep-alive connection: status line, headers, body (framed by Content-Length), the rest."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = 0 if lines[0].split()[1] == "304" else int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return lines[0], headers, rest[:length], rest[length:]


def test_a_304_is_headers_only_and_the_next_request_on_the_connection_is_answered(live):
    url, key = live
    auth = {"Authorization": f"Bearer {key}"}
    agent = httpx.post(f"{url}/v1/combo/agents", json={"name": "Reviewer"}, headers=auth).json()["data"]
    path = f"/v1/combo/agents/{agent['id']}"
    etag = httpx.get(f"{url}{path}", headers=auth).headers["ETag"]

    host, port = url.removeprefix("http://").split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nIf-None-Match: {etag}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        status, headers, body, rest = _read_response(sock, b"")
        assert status.startswith("HTTP/1.1 304 "), status
        assert headers["etag"] == etag and headers["x-request-id"] and headers["cache-control"] == "no-store"
        assert "x-ratelimit-remaining" in headers
        # No content and no content headers (a Content-Length would have to be the 200's: RFC 9110 8.6).
        assert "content-type" not in headers and "transfer-encoding" not in headers
        assert "content-length" not in headers and body == b""
        # Nothing was sent after the headers: the same connection answers the next request at once.
        sock.sendall(request.replace(etag, '"stale"').encode())
        status, headers, body, rest = _read_response(sock, rest)
        assert status.startswith("HTTP/1.1 200 "), status
        assert headers["etag"] == etag and b'"name":"Reviewer"' in body and rest == b""
