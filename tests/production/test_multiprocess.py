"""Several server processes over one database: state moves freely between them.

Runs on SQLite (WAL, one file) in the first pass of `make test` and on
PostgreSQL + Redis in the second (tests/production_suite.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, LiveCombo, free_port


@pytest.fixture(scope="module")
def pair():
    combo = LiveCombo()
    combo.migrate()
    combo.key = combo.create_key("alice")
    combo.urls = [combo.start(), combo.start()]
    yield combo
    combo.stop()


def http(combo, index: int) -> httpx.Client:
    return httpx.Client(base_url=combo.urls[index], headers={"Authorization": f"Bearer {combo.key}"}, timeout=20)


def test_a_session_started_on_one_process_continues_on_the_other(pair):
    with http(pair, 0) as one, http(pair, 1) as two:
        agent = one.post("/v1/combo/agents", json={"name": "shared", "instructions": "Two processes."}).json()
        agent_id = agent["data"]["id"]
        first = one.post(f"/v1/combo/agents/{agent_id}/completions", json={"question": "first"}).json()["data"]
        second = two.post(f"/v1/combo/agents/{agent_id}/completions",
                          json={"question": "second", "session_id": first["session_id"]}).json()["data"]
        assert second["session_id"] == first["session_id"]
        history = one.get(f"/v1/combo/sessions/{first['session_id']}").json()["data"]["messages"]["items"]
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "first"), ("assistant", first["answer"]), ("user", "second"), ("assistant", second["answer"]),
    ]


def test_a_key_revoked_through_one_process_is_refused_by_the_other(pair):
    token_user = pair.shell(
        "from accounts.models import User; from rest_framework_simplejwt.tokens import RefreshToken; "
        "print(RefreshToken.for_user(User.objects.get(username='alice')).access_token)"
    )
    jwt = {"Authorization": f"Bearer {token_user}"}
    with httpx.Client(base_url=pair.urls[0], headers=jwt) as one:
        created = one.post("/v1/api-keys", json={"name": "short-lived"}).json()["data"]
    key = {"Authorization": f"Bearer {created['key']}"}
    assert httpx.get(f"{pair.urls[1]}/v1/combo/agents", headers=key).status_code == 200
    with httpx.Client(base_url=pair.urls[0], headers=jwt) as one:
        assert one.delete(f"/v1/api-keys/{created['id']}").status_code == 200
    refused = httpx.get(f"{pair.urls[1]}/v1/combo/agents", headers=key)
    assert (refused.status_code, refused.json()["code"]) == (401, 10012)


def test_a_file_uploaded_through_one_process_is_answered_from_through_the_other(pair):
    text = b"# Deploying\n\nThe staging cluster is called heliotrope and deploys run every Tuesday.\n"
    with http(pair, 0) as one:
        uploaded = one.post("/v1/combo/files", files={"file": ("deploy.md", text)}).json()["data"]
        assert uploaded["status"] == "queued"
        agent = one.post("/v1/combo/agents", json={"name": "ops", "file_ids": [uploaded["id"]]}).json()["data"]
    # The worker is its own process, as `manage.py serve` runs it.
    pair.manage("db_worker", "--batch", "--no-startup-delay", "--interval", "0", "-v", "0")
    with http(pair, 1) as two:
        assert two.get(f"/v1/combo/files/{uploaded['id']}").json()["data"]["status"] == "ready"
        answer = two.post(f"/v1/combo/agents/{agent['id']}/completions",
                          json={"question": "What is the staging cluster called?"}).json()["data"]
    assert [ref["file_id"] for ref in answer["reference"]] == [uploaded["id"]]
    assert "heliotrope" in answer["reference"][0]["content"] and "heliotrope" in answer["answer"]


def test_serve_stops_the_rest_and_exits_1_when_one_server_process_dies():
    """So that a supervisor restarting on failure brings the whole deployment back."""
    combo = LiveCombo()
    combo.migrate()
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "2", "--no-worker", "-v", "0"],
        cwd=ROOT, env={**combo.env, "COMBO_REAPER_INTERVAL_SECONDS": "1", "COMBO_SHUTDOWN_GRACE_SECONDS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while time.monotonic() < deadline and len(children) < 2:
            children = [int(pid) for pid in Path(f"/proc/{serve.pid}/task/{serve.pid}/children").read_text().split()]
            time.sleep(0.2)
        assert len(children) == 2, "serve did not start its two server processes"
        while time.monotonic() < deadline:  # until they accept connections
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        os.kill(children[0], signal.SIGKILL)
        assert serve.wait(timeout=30) == 1
        assert b"A server process exited; stopping the others." in serve.stderr.read()
        assert not Path(f"/proc/{children[1]}").exists() or b"zombie" in Path(f"/proc/{children[1]}/status").read_bytes()
    finally:
        if serve.poll() is None:
            serve.kill()
        combo.stop()
