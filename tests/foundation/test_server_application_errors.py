"""An ASGI application that fails before it answers gets the API's envelope from combo.server, not daphne's HTML.

Served by the real server (combo.server, daphne) over a socket: a test-only
application (tests/foundation/failing_asgi.py) raises before its answer on
one path and never answers on another, with --http-timeout set (Combo sets
none; an operator may). daphne used to answer with its own HTML pages,
"Exception inside application." (500) and "Application failed to respond
within time limit." (503).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.live import LiveCombo

HTTP_TIMEOUT = 2
SECRET = "secret-db-password=hunter2"  # what failing_asgi's exception says


@pytest.fixture(scope="module")
def server():
    combo = LiveCombo()
    combo.migrate()
    try:
        url = combo.start(
            application="tests.foundation.failing_asgi:application", options=("--http-timeout", str(HTTP_TIMEOUT)),
        )
        host, port = url.removeprefix("http://").split(":")
        yield combo, (host, int(port))
    finally:
        combo.stop()


def _read_response(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """One response (framed by Content-Length) from a connection that may stay open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status_line, headers, body


def _get(sock: socket.socket, path: str, headers: str = "") -> tuple[str, dict[str, str], dict]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: combo.test\r\n{headers}\r\n".encode())
    status_line, response_headers, body = _read_response(sock)
    assert response_headers["content-type"] == "application/json", body[:300]
    assert response_headers["cache-control"] == "no-store"
    envelope = json.loads(body)
    assert set(envelope) == {"code", "message", "data"}
    if envelope["code"]:
        assert envelope["data"]["request_id"] == response_headers["x-request-id"]
    assert b"<html" not in body.lower() and b"Traceback" not in body and SECRET.encode() not in body
    return status_line, response_headers, envelope


def test_an_application_that_raises_before_answering_is_a_500_envelope_and_logged(server):
    combo, address = server
    with socket.create_connection(address, timeout=10) as sock:
        status_line, headers, envelope = _get(sock, "/test/raise", "X-Request-Id: client-chosen-id-42\r\n")
        assert status_line == "HTTP/1.1 500 Internal Server Error"
        assert envelope["code"] == 20001 and envelope["message"] == "Something went wrong on our side."
        assert headers["x-request-id"] == "client-chosen-id-42"
        # The connection goes on: the next request on it is served.
        status_line, _, envelope = _get(sock, "/v1/health")
        assert status_line == "HTTP/1.1 200 OK" and envelope["code"] == 0

    # The exception, with its traceback, is in the server's log only.
    deadline = time.monotonic() + 10
    while "Exception inside application" not in combo.log(address[1]) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = combo.log(address[1])
    assert "Exception inside application" in log and "Traceback" in log and SECRET in log


def test_an_application_that_raises_while_answering_ends_its_response_and_the_server_goes_on(server):
    # Too late for an answer of its own: the connection is closed, so the client sees the
    # response cut short (a chunked body without its last chunk) instead of waiting for more.
    # daphne used to try its 500 page there, fail ("HTTP response has already been started")
    # and with it stop the once-a-second check that reaps finished applications and answers
    # failed ones: every later failure then hung.
    _, address = server
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /test/raise-midway HTTP/1.1\r\nHost: combo.test\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK") and b"the first part" in received
        assert not received.endswith(b"0\r\n\r\n")  # cut short, never a complete body
        assert SECRET.encode() not in received
    for _ in range(2):  # the check still runs, second after second
        with socket.create_connection(address, timeout=10) as sock:
            status_line, _, envelope = _get(sock, "/test/raise")
            assert status_line == "HTTP/1.1 500 Internal Server Error" and envelope["code"] == 20001


def test_an_application_that_does_not_answer_in_time_is_a_503_envelope(server):
    _, address = server
    with socket.create_connection(address, timeout=HTTP_TIMEOUT + 10) as sock:
        started = time.monotonic()
        status_line, headers, envelope = _get(sock, "/test/hang")
        assert time.monotonic() - started >= HTTP_TIMEOUT
        assert status_line == "HTTP/1.1 503 Service Unavailable"
        assert envelope["code"] == 20002 and headers["x-request-id"].startswith("req_")
        assert f"time limit ({HTTP_TIMEOUT} seconds)" in envelope["message"]
        assert "check before you send a change again" in envelope["message"]
        # The application still running does not disturb the connection's next request.
        assert _get(sock, "/v1/health")[0] == "HTTP/1.1 200 OK"
