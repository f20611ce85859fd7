"""A server whose output nobody reads keeps serving: its log lines never block the event loop.

The access log (a line per request) and the logs go to stdout and stderr,
often a pipe (a container's log driver, a supervisor, `make run | tee`). A pipe
holds 64 KiB; when its reader stalls, a write into a full pipe blocks until
it reads again, and a write made on the event loop stopped every request of
the process with it. Here the real server (combo.server, daphne) runs with
both outputs on pipes that the test does not read while it sends requests.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time

import httpx
import pytest

from combo.server import daphne_command
from tests.live import ROOT, LiveCombo, free_port, wait_until_serving

REQUESTS = 1500  # about 160 KB of access log: more than twice what a pipe holds


@pytest.fixture
def unread_server():
    combo = LiveCombo(env={"COMBO_RATELIMIT_HEALTH": "1000000"})
    combo.migrate()
    port = free_port()
    process = subprocess.Popen(
        daphne_command("127.0.0.1", port), cwd=ROOT, env=combo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield process, url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        combo.stop()


def test_a_server_whose_output_is_not_read_keeps_answering_and_loses_no_line(unread_server):
    process, url = unread_server
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=5) as client:  # a blocked server: a ReadTimeout here
        for index in range(REQUESTS):
            assert client.get(f"/v1/health?unread={index}").status_code == 200
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed

    # Once the output is read again, every line arrives: none was dropped while it waited.
    output: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda name=name, pipe=pipe: output.__setitem__(name, pipe.read()))
        for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    time.sleep(1)  # the output thread writes what waited
    process.terminate()
    for reader in readers:
        reader.join(timeout=20)
    assert process.wait(timeout=15) is not None
    access = re.findall(r'"GET /v1/health\?unread=(\d+)" 200', output["stdout"].decode())
    assert sorted(map(int, access)) == list(range(REQUESTS)), (len(access), output["stderr"][-2000:])


def test_every_request_has_its_access_line_even_when_its_client_leaves_once_it_has_the_body(unread_server):
    # A client that reads the Content-Length's bytes and closes at once (curl, httpx.get) left
    # daphne waiting for the response's last, empty message, which then found the connection
    # gone: the response was never finished on the server's side, and its access line never written.
    process, url = unread_server
    host, port = url.removeprefix("http://").split(":")
    for index in range(40):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /v1/health?leaving=%d HTTP/1.1\r\nHost: combo.test\r\n\r\n" % index)
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
            while len(body) < length:
                body += sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 ")
        # closed the moment the body is in, as curl and httpx.get do
    time.sleep(0.5)
    process.terminate()
    out, err = process.communicate(timeout=20)
    access = re.findall(r'"GET /v1/health\?leaving=(\d+)" 200', out.decode())
    assert sorted(map(int, access)) == list(range(40)), (len(access), err[-2000:])
