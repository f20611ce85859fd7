"""Stopping a server mid-stream leaves every question with a recorded outcome."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.live import LiveCombo, read_sse_lines


@pytest.fixture
def upstream():
    with FakeOpenAIServer(tokens=40, slow_interval=0.25) as server:
        yield server


def start(upstream, grace="0.5"):
    combo = LiveCombo(env={
        "COMBO_LLM_BASE_URL": upstream.base_url,
        "COMBO_LLM_MODEL": "fake-slow",
        "COMBO_SHUTDOWN_GRACE_SECONDS": grace,
    })
    combo.migrate()
    combo.key = combo.create_key("alice")
    combo.url = combo.start()
    with httpx.Client(base_url=combo.url, headers={"Authorization": f"Bearer {combo.key}"}) as http:
        combo.agent = http.post("/v1/combo/agents", json={"name": "slow"}).json()["data"]["id"]
    return combo


def assistant_rows(combo) -> list[tuple]:
    out = combo.shell(
        "from agents.models import Message; from django.db.models.functions import Length; "
        "print(list(Message.objects.filter(role='assistant').annotate(n=Length('content'))"
        ".values_list('status', 'error_code', 'n')))"
    )
    return [tuple(row) for row in eval(out)]  # the repr of a list of tuples of str/int/None


class Listener(threading.Thread):
    """Streams one answer, noting when the first frame arrived and every line."""

    def __init__(self, combo, question):
        super().__init__()
        self.combo, self.question = combo, question
        self.first_frame = threading.Event()
        self.lines: list[str] = []

    def run(self):
        headers = {"Authorization": f"Bearer {self.combo.key}"}
        try:
            with httpx.Client(base_url=self.combo.url, headers=headers, timeout=30) as http:
                with http.stream("POST", f"/v1/combo/agents/{self.combo.agent}/completions",
                                 json={"question": self.question, "stream": True}) as response:
                    for line in response.iter_lines():
                        self.lines.append(line)
                        if line.startswith("event: message"):
                            self.first_frame.set()
        except httpx.HTTPError:
            pass  # the killed server drops the connection
        finally:
            self.first_frame.set()

    def events(self):
        return read_sse_lines(self.lines)


def test_sigterm_mid_stream_ends_the_stream_cleanly_and_records_it(upstream):
    combo = start(upstream)
    listener = Listener(combo, "a long answer please")
    listener.start()
    assert listener.first_frame.wait(20)  # streaming; 40 tokens at 0.25 s take 10 s
    time.sleep(0.5)
    combo.processes[0].send_signal(signal.SIGTERM)
    listener.join(timeout=20)
    assert combo.processes[0].wait(timeout=20) == 0
    events = listener.events()
    kinds = [kind for kind, _ in events if kind != "comment"]
    assert kinds[0] == "message" and kinds[-2:] == ["error", "done"]
    error = [data for kind, data in events if kind == "error"][0]
    assert error["code"] == 20004
    [(status, error_code, length)] = assistant_rows(combo)
    assert (status, error_code) == ("interrupted", 20004) and length > 0
    combo.stop()


def refused_completion_and_close(combo) -> tuple[int, dict[str, str], dict, float | None]:
    """A completion asked on a keep-alive connection: status, headers, envelope, seconds until the server closed it."""
    host, port = combo.url.removeprefix("http://").split(":")
    body = b'{"question": "hello", "stream": true}'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/combo/agents/{combo.agent}/completions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {combo.key}\r\nContent-Type: application/json\r\n"
            f"Connection: keep-alive\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        if "content-length" in headers:
            while len(rest) < int(headers["content-length"]):
                rest += sock.recv(65536)
        else:  # chunked
            while not rest.endswith(b"0\r\n\r\n"):
                rest += sock.recv(65536)
            chunks, rest = rest, b""
            while True:
                size_line, _, chunks = chunks.partition(b"\r\n")
                if int(size_line, 16) == 0:
                    break
                rest, chunks = rest + chunks[:int(size_line, 16)], chunks[int(size_line, 16) + 2:]
        answered = time.monotonic()
        sock.settimeout(3)
        try:
            closed = None if sock.recv(1) else time.monotonic() - answered
        except TimeoutError:
            closed = None
    return int(lines[0].split()[1]), headers, json.loads(rest), closed


def test_while_a_process_drains_its_health_says_so_for_load_balancers(upstream):
    combo = start(upstream, grace="5")
    assert httpx.get(f"{combo.url}/v1/health", timeout=10).status_code == 200
    listener = Listener(combo, "a long answer please")
    listener.start()
    assert listener.first_frame.wait(20)
    combo.processes[0].send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while True:  # the signal is taken on the server's loop a moment later
        health = httpx.get(f"{combo.url}/v1/health", timeout=10)
        if health.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    body = health.json()
    assert (health.status_code, body["code"], body["data"]["status"]) == (503, 20004, "draining"), body
    assert health.headers["retry-after"] == "1" and body["data"]["request_id"] == health.headers["x-request-id"]
    # A new completion there is refused before it is counted: no rate-limit
    # headers; the connection closes, so the retry reaches another process.
    status, headers, envelope, closed = refused_completion_and_close(combo)
    assert (status, envelope["code"], headers["retry-after"]) == (503, 20004, "1"), (status, headers, envelope)
    assert headers["connection"] == "close" and not any(name.startswith("x-ratelimit") for name in headers)
    assert envelope["data"]["request_id"] == headers["x-request-id"]
    assert closed is not None and closed < 1, closed  # long before the process exits (grace: 5 s)
    listener.join(timeout=20)
    assert combo.processes[0].wait(timeout=20) == 0
    combo.stop()


def test_a_killed_server_leaves_in_progress_rows_that_the_reaper_marks(upstream):
    combo = start(upstream)
    listener = Listener(combo, "x")
    listener.start()
    assert listener.first_frame.wait(20)
    combo.processes[0].send_signal(signal.SIGKILL)
    listener.join(timeout=20)
    assert assistant_rows(combo) == [("in_progress", None, 0)]
    assert "Would mark 1" in combo.manage("reap_interrupted", "--older-than", "0", "--dry-run")
    assert assistant_rows(combo) == [("in_progress", None, 0)]
    assert "Marked 1" in combo.manage("reap_interrupted", "--older-than", "0")
    assert assistant_rows(combo) == [("interrupted", 20004, 0)]
    combo.stop()
