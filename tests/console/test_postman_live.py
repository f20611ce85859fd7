"""The downloaded Postman collection runs under newman against a live server.

The server runs as `make run` does (daphne, tests.live.LiveCombo). The test
signs in to the console over HTTP, downloads the collection, and runs every
request in it with newman using a real API key and a real agent and session;
no response may be a 5xx. newman comes from npm (`npm install -g newman`);
without it the test is skipped with that reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest

from tests.live import LiveCombo

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.skipif(
    shutil.which("newman") is None, reason="newman is not on PATH; install it with `npm install -g newman`"
)


@pytest.fixture(scope="module")
def live():
    combo = LiveCombo()
    combo.migrate()
    combo.create_user("alice", PASSWORD)
    combo.alice_key = combo.create_key("alice")
    combo.url = combo.start()
    yield combo
    combo.stop()


def console_session(url: str, username: str, password: str) -> httpx.Client:
    """An HTTP client signed in to the console through its sign-in form (with CSRF)."""
    http = httpx.Client(base_url=url, timeout=30)
    page = http.get("/console/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = http.post("/console/login/", data={
        "csrfmiddlewaretoken": token, "username": username, "password": password,
    })
    assert response.status_code == 302, response.text[:500]
    return http


def download(live, tmp_path) -> tuple[dict, str]:
    http = console_session(live.url, "alice", PASSWORD)
    response = http.get("/console/api/postman.json")
    http.close()
    assert response.status_code == 200
    path = tmp_path / "combo.postman_collection.json"
    path.write_text(response.text)
    return response.json(), str(path)


def newman(collection_path: str, report, **variables: str) -> tuple[subprocess.CompletedProcess, dict]:
    command = ["newman", "run", collection_path]
    for name, value in variables.items():
        command += ["--env-var", f"{name}={value}"]
    command += [
        "--reporters", "cli,json", "--reporter-json-export", str(report),
        "--timeout-request", "30000", "--color", "off",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert report.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    return result, json.loads(report.read_text())["run"]


def test_the_downloaded_collection_runs_under_newman_without_a_5xx(live, tmp_path):
    api = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.alice_key}"}, timeout=30)
    agent_id = api.post("/v1/combo/agents", json={"name": "Newman's agent"}).json()["data"]["id"]
    session_id = api.post(f"/v1/combo/agents/{agent_id}/sessions", json={}).json()["data"]["id"]

    collection, path = download(live, tmp_path)
    assert {v["key"]: v["value"] for v in collection["variable"]}["base_url"] == f"{live.url}/v1"
    result, run = newman(
        path, tmp_path / "newman.json",
        base_url=f"{live.url}/v1", api_key=live.alice_key, agent_id=agent_id, session_id=session_id,
    )
    executions = run["executions"]
    by_name = {e["item"]["name"]: e["response"]["code"] for e in executions if "response" in e}
    requests = [item for folder in collection["item"] for item in folder["item"]]
    # Every request ran but the DELETEs of objects this run did not create (its
    # create was refused: no file to upload, a key needing a JWT, a webhook
    # with a placeholder agent): a run never deletes what it was given.
    skipped = {item["name"] for item in requests} - {e["item"]["name"] for e in executions}
    assert skipped == {"Delete api key", "Delete a file", "Delete webhook"}, result.stdout[-3000:]
    assert all("response" in e for e in executions), "a request got no response at all"
    server_errors = {name: code for name, code in by_name.items() if code >= 500}
    assert server_errors == {}, result.stdout[-3000:]
    assert run["failures"] == [] and result.returncode == 0, result.stdout[-3000:]
    # The key and the variables really reached the server: these succeed.
    assert by_name["List agents"] == 200
    assert by_name["Get agent"] == 200
    assert by_name["Ask the agent a question"] == 200
    assert by_name["Delete agent"] in (200, 204)  # the agent the run created
    assert by_name["GET /health"] == 200
    # The agent and the session named on the command line are still there.
    assert api.get(f"/v1/combo/agents/{agent_id}").status_code == 200
    assert api.get(f"/v1/combo/sessions/{session_id}").status_code == 200


def test_as_imported_the_collection_needs_only_an_api_key(live, tmp_path):
    """Create requests keep the new ids, so a run with just `api_key` set reaches real objects."""
    _, path = download(live, tmp_path)
    result, run = newman(path, tmp_path / "newman.json", api_key=live.alice_key)
    codes = {e["item"]["name"]: e["response"]["code"] for e in run["executions"]}
    assert max(codes.values()) < 500 and run["failures"] == [], result.stdout[-3000:]
    assert codes["Create agent"] == 201 and codes["Get agent"] == 200
    assert codes["Create session"] == 201 and codes["Get session"] == 200
    assert codes["Ask the agent a question"] == 200
