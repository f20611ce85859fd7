"""Knowledge through a live daphne, as `make run` serves it, and the real task worker process.

Files are uploaded over HTTP, ingested by `manage.py db_worker --batch` running
as its own process against the server's data folder (the server itself runs no
worker here), and answers cite them identically in the stream, in the
non-stream envelope and in the session's stored history. The upload size cap is
checked on raw sockets, including a chunked body that never says its length.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.knowledge.conftest import build_text_pdf
from tests.live import LiveCombo, read_sse

LIMIT = 200_000

HANDBOOK = b"""# Customer handbook

## Refunds

Refunds are issued within 14 days after the returned item reaches our warehouse.
A refund goes back to the original payment method.

## Shipping

Orders ship from Rotterdam every weekday. International parcels take five to eight business days.

## Warranty

Every device carries a two-year warranty covering manufacturing defects.
"""


@pytest.fixture(scope="module")
def live():
    combo = LiveCombo(env={"COMBO_MAX_UPLOAD_BYTES": str(LIMIT)})
    combo.migrate()
    combo.alice_key = combo.create_key("alice")
    combo.bob_key = combo.create_key("bob")
    combo.url = combo.start()
    yield combo
    combo.stop()


def client(live, key=None) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key or live.alice_key}"}, timeout=30)


def upload(live, name: str, data: bytes, **fields) -> httpx.Response:
    with client(live) as http:
        return http.post("/v1/combo/files", files={"file": (name, data)}, data=fields)


def run_worker(live) -> None:
    """The real worker, as `manage.py serve` starts it, draining the queue and exiting."""
    live.manage("db_worker", "--batch", "--no-startup-delay", "--interval", "0", "-v", "0")


def wait_until_settled(live, file_id: str) -> dict:
    deadline = time.monotonic() + 30
    with client(live) as http:
        while time.monotonic() < deadline:
            data = http.get(f"/v1/combo/files/{file_id}").json()["data"]
            if data["status"] in ("ready", "failed"):
                return data
            time.sleep(0.2)
    raise AssertionError(f"file {file_id} still {data['status']}")


def test_queued_uploads_wait_for_the_worker_process_which_ingests_them(live):
    handbook = upload(live, "handbook.md", HANDBOOK)
    pdf = upload(live, "policy.pdf", build_text_pdf([["Returns"], ["Parcels leave Rotterdam daily."]]))
    assert (handbook.status_code, pdf.status_code) == (201, 201), handbook.text
    ids = [handbook.json()["data"]["id"], pdf.json()["data"]["id"]]
    time.sleep(0.5)
    with client(live) as http:
        assert [http.get(f"/v1/combo/files/{i}").json()["data"]["status"] for i in ids] == ["queued", "queued"]
    run_worker(live)
    ready = [wait_until_settled(live, i) for i in ids]
    assert [(f["status"], f["chunk_count"]) for f in ready] == [("ready", 4), ("ready", 2)]
    assert ready[1]["pages"] == 2
    again = upload(live, "handbook-copy.md", HANDBOOK)
    assert again.status_code == 200 and again.json()["data"]["id"] == ids[0]


def test_references_are_identical_in_both_modes_and_in_history(live):
    file_id = upload(live, "faq.md", HANDBOOK.replace(b"Customer handbook", b"FAQ")).json()["data"]["id"]
    run_worker(live)
    assert wait_until_settled(live, file_id)["status"] == "ready"
    with client(live) as http:
        agent = http.post("/v1/combo/agents", json={"name": "Support", "llm": {"provider": "builtin"},
                                                    "file_ids": [file_id]}).json()["data"]
        question = "How long do refunds take?"
        plain = http.post(f"/v1/combo/agents/{agent['id']}/completions", json={"question": question}).json()["data"]
        with http.stream("POST", f"/v1/combo/agents/{agent['id']}/completions",
                         json={"question": question, "stream": True}) as response:
            events = read_sse(response)
        messages = [data for kind, data in events if kind == "message"]
        done = [data for kind, data in events if kind == "done"][0]
        stored_plain = http.get(f"/v1/combo/sessions/{plain['session_id']}").json()["data"]["messages"]["items"]
        stored_stream = http.get(f"/v1/combo/sessions/{done['session_id']}").json()["data"]["messages"]["items"]

    reference = plain["reference"]
    assert reference, plain
    assert messages[-1]["reference"] == reference
    assert all(m["reference"] == [] for m in messages[:-1])
    assert stored_plain[-1]["reference"] == reference and stored_stream[-1]["reference"] == reference

    best = reference[0]
    assert set(best) == {"id", "file_id", "file_name", "content", "score", "position"}
    assert best["file_id"] == file_id and best["file_name"] == "faq.md" and best["id"] == f"{file_id}:1"
    assert best["position"] == {"heading": "FAQ > Refunds"} and "14 days" in best["content"]
    scores = [r["score"] for r in reference]
    assert scores == sorted(scores, reverse=True)
    answer = plain["answer"]
    assert "".join(m["answer"] for m in messages) == answer
    assert 'From "faq.md": ## Refunds Refunds are issued within 14 days' in answer


def test_an_agent_without_ready_files_says_nothing_relevant_was_found(live):
    with client(live) as http:
        agent = http.post("/v1/combo/agents", json={"name": "Empty", "llm": {"provider": "builtin"}}).json()["data"]
        data = http.post(f"/v1/combo/agents/{agent['id']}/completions",
                         json={"question": "How long do refunds take?"}).json()["data"]
    assert data["reference"] == [] and "I found no passage" in data["answer"]


# ---------------------------------------------------------------- the size cap on the wire


def raw_request(live, head: str, body_chunks, *, chunked: bool) -> tuple[bytes, int]:
    """Send a request on a raw socket, stopping as soon as the server answers; (response, bytes sent)."""
    host, port = live.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        response = b""
        for piece in body_chunks:
            frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            try:
                sock.sendall(frame)
                sent += len(piece)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            try:
                response += sock.recv(65536)
                if response:
                    break
            except BlockingIOError:
                pass
        sock.setblocking(True)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except (ConnectionResetError, TimeoutError):
            pass
    return response, sent


def envelope_of(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def multipart_head(live, length: str) -> str:
    host = live.url.removeprefix("http://")
    return (
        f"POST /v1/combo/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {live.alice_key}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\n{length}\r\n"
    )


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(live):
    head = multipart_head(live, f"Content-Length: {50 * 1024 * 1024}\r\nExpect: 100-continue\r\n")
    response, sent = raw_request(live, head, (b"x" * 65536 for _ in range(800)), chunked=False)
    assert response.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in response
    status, body = envelope_of(response)
    assert (status, body["code"]) == (413, 10123) and body["data"]["limit_bytes"] == LIMIT
    assert sent < 20 * 1024 * 1024, "the server stopped the upload long before 50 MB"


def test_a_chunked_body_that_never_says_its_length_is_cut_off_at_the_cap(live):
    head = multipart_head(live, "Transfer-Encoding: chunked\r\n")
    response, sent = raw_request(live, head, (b"x" * 65536 for _ in range(800)), chunked=True)
    status, body = envelope_of(response)
    assert (status, body["code"]) == (413, 10123)
    assert sent < 20 * 1024 * 1024, "the server stopped the upload long before 50 MB"
    with client(live) as http:  # and the server is fine
        assert http.get("/v1/health").status_code == 200


def test_an_upload_under_the_json_cap_but_over_its_own_is_refused_as_too_large(live):
    """Twisted's cap is the larger of the JSON and upload limits; the ASGI edge answers the upload's own 10123."""
    response = upload(live, "bigger.txt", b"a" * (2 * LIMIT))
    assert (response.status_code, response.json()["code"]) == (413, 10123), response.text
    assert response.json()["data"]["limit_bytes"] == LIMIT
    assert response.json()["message"].startswith("The file is over the limit of 200,000 bytes")


def test_a_file_just_over_the_limit_inside_the_allowance_is_refused_by_the_parser(live):
    response = upload(live, "big.txt", b"a" * (LIMIT + 1))
    assert (response.status_code, response.json()["code"]) == (413, 10123)
    assert response.json()["data"]["request_id"] == response.headers["x-request-id"]
    ok = upload(live, "fits.txt", b"word " * (LIMIT // 5))
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        ("multipart/form-data", 10002),  # no boundary
        ("multipart/form-data; boundary=", 10002),
        ("multipart/form-data; boundary=xyz", 10124),  # no part at all
    ],
)
def test_a_malformed_multipart_body_is_answered_by_the_api_in_its_envelope(live, content_type, code):
    # Twisted would parse form bodies itself and answer a bad one with a bare 400 (combo.server).
    with client(live) as http:
        before = http.get("/v1/combo/files").json()["data"]
        response = http.post("/v1/combo/files", content=b"--xyz\r\ngarbage", headers={"Content-Type": content_type})
        assert (response.status_code, response.json()["code"]) == (400, code), response.text
        assert response.json()["data"]["request_id"] == response.headers["x-request-id"]
        assert http.get("/v1/combo/files").json()["data"] == before
