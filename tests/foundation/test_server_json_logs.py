"""LOG_FORMAT=json on a real server (combo.server, daphne): every line it writes is one JSON object.

Its log file holds stdout (daphne's access log) and stderr (everything else)
together, as a supervisor or log driver reads them. The test-only application
(tests/foundation/failing_asgi.py) raises on /test/raise, for an ERROR line
with a traceback.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live import LiveCombo, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server():
    combo = LiveCombo()
    combo.migrate()
    try:
        url = combo.start(extra_env={"LOG_FORMAT": "json"}, application="tests.foundation.failing_asgi:application")
        yield combo, url
    finally:
        combo.stop()


def _entries(combo: LiveCombo, url: str, until) -> list[dict]:
    """The server's log lines, each parsed as JSON, once `until(entries)` holds (or 10 s have passed)."""
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in combo.log(port).splitlines() if line.strip()]
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except ValueError:
                pytest.fail(f"a log line that is not JSON: {line!r}")
        if until(entries) or time.monotonic() > deadline:
            return entries


def _access(entries: list[dict], path: str) -> dict | None:
    return next((e for e in entries if e["logger"] == "daphne.access" and e["path"] == path), None)


def test_every_line_is_json_the_access_line_and_the_error_with_its_traceback_included(server):
    combo, url = server
    with httpx.Client(base_url=url, timeout=10) as client:
        health = client.get("/v1/health?probe=1", headers={"X-Request-Id": "req-json-log-1"})
        failed = client.get("/test/raise")
    assert health.status_code == 200 and failed.status_code == 500

    def complete(entries):
        return (_access(entries, "/v1/health?probe=1") and _access(entries, "/test/raise")
                and any(e["message"].startswith("Exception inside application") for e in entries))

    # stdout and stderr are written by threads of their own: their lines may come in either order.
    entries = _entries(combo, url, complete)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["time"].endswith("Z") and len(entry["time"]) == len("2026-01-01T00:00:00.000Z")

    line = _access(entries, "/v1/health?probe=1")
    assert line is not None, entries
    assert line["level"] == "INFO" and line["method"] == "GET" and line["status"] == 200
    assert line["size"] == len(health.content) and line["client"].startswith("127.0.0.1:")
    assert line["request_id"] == health.headers["x-request-id"] == "req-json-log-1"

    line = _access(entries, "/test/raise")
    assert line is not None, entries
    assert line["status"] == 500 and line["request_id"] == failed.headers["x-request-id"]

    [error] = [e for e in entries if e["message"].startswith("Exception inside application")]
    assert error["level"] == "ERROR" and error["logger"] == "daphne.server"
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError" in error["exception"]

    started = [e for e in entries if e["message"].startswith("Listening on TCP address")]
    assert started and started[0]["level"] == "INFO"


def test_a_request_refused_before_the_application_has_its_json_access_line(server):
    combo, url = server
    host, port = url.removeprefix("http://").split(":")
    path = "/v1/" + "a" * 17_000  # over the request line's limit: 414, answered by combo.server itself
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: combo.test\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 414 ")
    request_id = next(
        line.split(b":", 1)[1].strip().decode() for line in received.split(b"\r\n") if line.lower().startswith(b"x-request-id:")
    )

    entries = _entries(combo, url, lambda es: any(e.get("status") == 414 for e in es))
    [line] = [e for e in entries if e.get("status") == 414]
    assert line["logger"] == "daphne.access" and line["request_id"] == request_id


def test_manage_py_serve_says_everything_in_json_too(tmp_path):
    """`manage.py serve`: its banner and notes, its server process's lines and the access log, all JSON."""
    combo = LiveCombo()
    combo.migrate()
    port = free_port()
    output = tmp_path / "serve.log"
    with output.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker"],
            cwd=ROOT, env={**combo.env, "LOG_FORMAT": "json"}, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                try:
                    response = client.get("/v1/health")
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline and serve.poll() is None, output.read_text()[-2000:]
                    time.sleep(0.2)
            while '"logger":"daphne.access"' not in output.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
        combo.stop()
    entries = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]  # each one JSON
    [banner] = [e for e in entries if e["message"].startswith("Combo is starting on")]
    assert banner["logger"] == "combo.serve" and "Console:" in banner["message"]
    [access] = [e for e in entries if e["logger"] == "daphne.access"]
    assert access["path"] == "/v1/health" and access["request_id"] == response.headers["x-request-id"]
