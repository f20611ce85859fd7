"""Requests broken at the HTTP level get a status and the API's envelope from combo.server.

Sent as raw bytes over a socket to the real server: no HTTP client would send
most of these. Twisted (under daphne) used to close the connection without a
word on an over-long line, and answered other broken requests with a bare
`400 Bad Request` (or daphne's HTML page).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.live import LiveCombo

LIMIT = 16384  # the request line, and the request line plus header fields (line ends not counted)


@pytest.fixture(scope="module")
def address():
    combo = LiveCombo()
    combo.migrate()
    try:
        host, port = combo.start().removeprefix("http://").split(":")
        yield host, int(port)
    finally:
        combo.stop()


def _exchange(address, raw: bytes) -> bytes:
    """Send `raw` whole, then read until the server closes the connection."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status_line, headers, body


def _assert_refused(raw: bytes, status_line: str, code: int) -> dict:
    line, headers, body = _parse(raw)
    assert line == status_line, raw[:300]
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    envelope = json.loads(body)
    assert envelope["code"] == code
    assert envelope["message"]
    assert envelope["data"]["request_id"] == headers["x-request-id"]
    assert headers["x-request-id"].startswith("req_") or headers["x-request-id"] == "client-chosen-id-42"
    return envelope


def _get(target: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: combo.test\r\n" + headers + b"\r\n"


def test_an_over_long_request_line_is_414(address):
    envelope = _assert_refused(
        _exchange(address, _get(b"/v1/health?q=" + b"a" * 20_000)), "HTTP/1.1 414 URI Too Long", 10071
    )
    assert str(LIMIT) in envelope["message"].replace(",", "")


def test_the_limits_are_exact_and_the_request_line_counts_toward_the_headers_one(address):
    def line_of(length: int) -> bytes:  # a target making the request line `length` bytes long
        return b"/v1/health?q=" + b"a" * (length - len(b"GET /v1/health?q= HTTP/1.1"))

    _assert_refused(_exchange(address, _get(line_of(LIMIT + 1))), "HTTP/1.1 414 URI Too Long", 10071)
    fields = b"Connection: close\r\n"
    fits = LIMIT - len(b"Host: combo.test") - len(b"Connection: close")  # line ends are not counted
    line, _, _ = _parse(_exchange(address, _get(line_of(fits), fields)))
    assert line == "HTTP/1.1 200 OK"
    _assert_refused(_exchange(address, _get(line_of(fits + 1), fields)),
                    "HTTP/1.1 431 Request Header Fields Too Large", 10072)


def test_one_over_long_header_field_is_431(address):
    raw = _exchange(address, _get(b"/v1/health", b"X-Big: " + b"a" * 20_000 + b"\r\n"))
    _assert_refused(raw, "HTTP/1.1 431 Request Header Fields Too Large", 10072)


def test_header_fields_over_the_limit_together_are_431(address):
    fields = b"".join(b"X-Field-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
    raw = _exchange(address, _get(b"/v1/health", b"X-Request-Id: client-chosen-id-42\r\n" + fields))
    envelope = _assert_refused(raw, "HTTP/1.1 431 Request Header Fields Too Large", 10072)
    assert envelope["data"]["request_id"] == "client-chosen-id-42"  # it arrived before the limit


def test_more_than_500_header_fields_are_431(address):
    fields = b"".join(b"X-Field-%d: a\r\n" % i for i in range(501))
    _assert_refused(_exchange(address, _get(b"/v1/health", fields)), "HTTP/1.1 431 Request Header Fields Too Large",
                    10072)


def test_a_client_still_sending_its_body_reads_the_answer(address):
    """The rest of a refused request is read and dropped: closing on unread bytes would reset the connection.

    Closed at once, the server's socket reset the connection while the client
    was still sending (a broken pipe), and the client never read the answer.
    """
    body = b"x" * 20_000_000
    head = _get(b"/v1/combo/files", b"Cookie: " + b"a" * 20_000 + b"\r\nContent-Length: %d\r\n" % len(body))
    raw = _exchange(address, head.replace(b"GET ", b"POST ", 1) + body)
    _assert_refused(raw, "HTTP/1.1 431 Request Header Fields Too Large", 10072)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("GET /v1/héalth HTTP/1.1\r\nHost: combo.test\r\n\r\n".encode(), id="utf-8 in the path"),
        pytest.param(b"GET /v1/h\x80alth HTTP/1.1\r\nHost: combo.test\r\n\r\n", id="0x80 in the path"),
        pytest.param(b"GET /v1/health?q=\x80 HTTP/1.1\r\nHost: combo.test\r\n\r\n", id="0x80 in the query"),
        pytest.param(b"HELLO\r\n\r\n", id="no request line"),
        pytest.param(b"GET /v1/health HTTP/2.0\r\nHost: combo.test\r\n\r\n", id="unknown version"),
        pytest.param(b"GET /v1/health HTTP/1.1\r\nHost: combo.test\r\nNo colon\r\n\r\n", id="header without colon"),
        pytest.param(b"GET /v1/health HTTP/1.1\r\nHost: combo.test\r\nX-A: \x0b\r\n\r\n", id="control byte in a value"),
        pytest.param(b"POST /v1/health HTTP/1.1\r\nHost: combo.test\r\nContent-Length: ten\r\n\r\n",
                     id="bad Content-Length"),
        pytest.param(b"POST /v1/health HTTP/1.1\r\nHost: combo.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     id="bad chunk size"),
    ],
)
def test_a_malformed_request_is_400(address, raw):
    _assert_refused(_exchange(address, raw), "HTTP/1.1 400 Bad Request", 10004)


def test_a_malformed_request_after_a_good_one_on_the_same_connection_is_400(address):
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(_get(b"/v1/health") + b"GET /v1/h\xc3\xa9alth HTTP/1.1\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    second = raw[raw.index(b"HTTP/1.1 400 "):]
    _assert_refused(second, "HTTP/1.1 400 Bad Request", 10004)


def test_the_request_id_the_client_sent_names_a_400_from_daphne(address):
    raw = _exchange(address, b"GET /v1/h\x80alth HTTP/1.1\r\nHost: combo.test\r\n"
                             b"X-Request-Id: client-chosen-id-42\r\n\r\n")
    envelope = _assert_refused(raw, "HTTP/1.1 400 Bad Request", 10004)
    assert envelope["data"]["request_id"] == "client-chosen-id-42"
    assert "percent-encode" in envelope["message"]


def test_normal_sized_headers_are_served_as_before_and_the_connection_kept(address):
    big = b"X-Big: " + b"a" * 8192 + b"\r\n"
    near = b"".join(b"X-Field-%d: %s\r\n" % (i, b"a" * 1000) for i in range(15))  # some 15 KB in all
    with socket.create_connection(address, timeout=10) as sock:
        for extra in (big, near):
            sock.sendall(_get(b"/v1/health", extra))
            raw = b""
            while b"\r\n\r\n" not in raw:
                raw += sock.recv(65536)
            line, headers, body = _parse(raw)
            while len(body) < int(headers["content-length"]):
                body += sock.recv(65536)
            assert line == "HTTP/1.1 200 OK"
            assert headers.get("connection") != "close"
            assert json.loads(body)["code"] == 0
