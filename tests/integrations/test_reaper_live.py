"""`manage.py serve` and its task worker as real processes: the reaper marks events a worker left `running`
and sends again the results one left `pending`.

The agent asks a fake upstream that never answers (fake-hang), so a run stays
`running` until its worker is killed or the language model timeout ends it
(the last test's answers at once, and its receiver is the slow one); results
go to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from integrations.signing import sign
from tests.fakes.openai_server import FakeOpenAIServer
from tests.live import ROOT, LiveCombo, free_port, wait_until_serving


@pytest.fixture
def upstream():
    with FakeOpenAIServer() as server:
        yield server


class Serve:
    """One `manage.py serve` process (daphne and the task worker as its children), its output in a file."""

    def __init__(self, combo: LiveCombo, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(combo.data_dir) / f"serve-{self.port}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(self.port), "-v", "0"],
                cwd=ROOT, env={**combo.env, **env}, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_until_serving(self.url, self.process, self.output)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pid(self) -> int:
        pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        [pid] = [int(p) for p in pids if b"db_worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
        return pid

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def until(check, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def live_combo(upstream, **env: str) -> LiveCombo:
    combo = LiveCombo(env={
        "COMBO_LLM_BASE_URL": upstream.base_url,
        "COMBO_LLM_MODEL": "fake-hang",
        "COMBO_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "COMBO_REAPER_INTERVAL_SECONDS": "1",
        "COMBO_SHUTDOWN_GRACE_SECONDS": "1",
        **env,
    })
    combo.migrate()
    combo.key = combo.create_key("alice")
    return combo


def send_event(combo: LiveCombo, url: str, callback_url: str) -> tuple[str, str]:
    """Create an agent and a webhook over HTTP, then send it one signed event; returns (webhook id, delivery id)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {combo.key}"}, timeout=10) as http:
        agent = http.post("/v1/combo/agents", json={"name": "reviewer"}).json()["data"]
        hook = http.post(
            "/v1/integrations/webhooks",
            json={"name": "CI", "agent_id": agent["id"], "callback_url": callback_url},
        ).json()["data"]
    body = json.dumps({"question": "Review this PR for me"}).encode()
    response = httpx.post(
        f"{url}/v1/integrations/webhooks/{hook['id']}/events", content=body,
        headers={"Content-Type": "application/json", "X-Combo-Signature": sign(hook["secret"], body)},
    )
    assert response.status_code == 202, response.text
    return hook["id"], response.json()["data"]["delivery_id"]


def delivery(combo: LiveCombo, url: str, hook_id: str, delivery_id: str) -> dict:
    response = httpx.get(
        f"{url}/v1/integrations/webhooks/{hook_id}/deliveries/{delivery_id}",
        headers={"Authorization": f"Bearer {combo.key}"}, timeout=10,
    )
    return response.json()["data"]


def rows(combo: LiveCombo) -> dict:
    """The delivery, its run's task row and the agent's answer, read from the database (no server needed)."""
    out = combo.shell(
        "from integrations.models import WebhookDelivery; from django_tasks_db.models import DBTaskResult; "
        "from agents.models import Message; "
        "print(repr({'delivery': list(WebhookDelivery.objects.values_list('status', 'error_code')), "
        "'run_task': list(DBTaskResult.objects.filter(task_path='integrations.tasks.run_webhook_event')"
        ".values_list('status', flat=True)), "
        "'answer': list(Message.objects.filter(role='assistant').values_list('status', flat=True))}))"
    )
    return eval(out)  # the repr of a dict of lists of str/int/None


def test_a_run_whose_worker_was_killed_is_marked_failed_when_serve_starts_again(upstream, receiver):
    combo = live_combo(upstream)
    first = Serve(combo)
    try:
        hook_id, delivery_id = send_event(combo, first.url, receiver.url)
        until(lambda: delivery(combo, first.url, hook_id, delivery_id)["status"] == "running", what="the run")
        until(lambda: rows(combo)["answer"] == ["in_progress"], what="the agent to be asked")
        os.kill(first.worker_pid(), signal.SIGKILL)
        assert first.process.wait(timeout=60) == 1  # a child died: serve stops the rest
    finally:
        first.stop()
    # Nothing recorded the end: the delivery, the task queue's own row and the answer all stay running.
    assert rows(combo) == {"delivery": [("running", None)], "run_task": ["RUNNING"], "answer": ["in_progress"]}

    second = Serve(combo, COMBO_REAPER_TIMEOUT_SECONDS="1")
    try:
        output = second.output()
        assert "Marked 1 answer(s) left by a stopped server as interrupted." in output
        assert "Marked 1 webhook event(s) left running by a stopped task worker as failed." in output
        assert "Marked 1 task(s) left running by a stopped task worker as failed." in output  # the queue's own row
        until(lambda: receiver.received, what="the result to reach the receiver")
        [got] = receiver.received
        assert got.headers["x-combo-event"] == "completion.failed"
        sent = json.loads(got.body)
        assert sent["delivery_id"] == delivery_id and sent["error"]["code"] == 20004
        data = until(
            lambda: (d := delivery(combo, second.url, hook_id, delivery_id))["callback_status"] == "delivered" and d,
            what="the attempt to be recorded",
        )
        assert data["status"] == "failed" and data["error"]["code"] == 20004 and data["finished_at"]
        time.sleep(1)  # the new worker does not run the event again, nor send it twice
        assert len(receiver.received) == 1
        assert rows(combo) == {"delivery": [("failed", 20004)], "run_task": ["FAILED"], "answer": ["interrupted"]}
    finally:
        assert second.stop() == 0


def test_serve_marks_a_run_past_the_timeout_and_its_late_outcome_replaces_the_mark(upstream, receiver):
    # The run is still alive when the periodic reaper sees it is older than 1 s;
    # the upstream timeout ends it 6 s in, with its own error.
    combo = live_combo(upstream, COMBO_REAPER_TIMEOUT_SECONDS="1", COMBO_LLM_TIMEOUT="6")
    serve = Serve(combo)
    try:
        hook_id, delivery_id = send_event(combo, serve.url, receiver.url)
        marked = until(
            lambda: (d := delivery(combo, serve.url, hook_id, delivery_id))["status"] == "failed" and d,
            what="the periodic reaper's mark",
        )
        assert marked["error"]["code"] == 20004 and receiver.received == []
        done = until(
            lambda: (d := delivery(combo, serve.url, hook_id, delivery_id))["callback_status"] == "delivered" and d,
            what="the late outcome to be sent",
        )
        assert done["status"] == "failed" and done["error"]["code"] == 30002  # the upstream timed out
        # One worker was busy with the run, so the reaper's send was still queued
        # when the outcome started a newer cycle: only the outcome is sent (a
        # superseded cycle never sends, whenever its task runs).
        [got] = receiver.received
        assert json.loads(got.body)["error"]["code"] == 30002
        assert [a["outcome"] for a in delivery(combo, serve.url, hook_id, delivery_id)["attempts"]] == ["delivered"]
    finally:
        assert serve.stop() == 0


def test_a_result_whose_worker_was_killed_while_sending_is_sent_again_when_serve_starts(upstream, receiver):
    combo = live_combo(upstream, COMBO_LLM_MODEL="fake")
    receiver.delay = 8  # the receiver takes its time (within the 10 s per try): the worker is killed meanwhile
    first = Serve(combo)
    try:
        hook_id, delivery_id = send_event(combo, first.url, receiver.url)
        until(lambda: receiver.received, what="the first try to reach the receiver")
        os.kill(first.worker_pid(), signal.SIGKILL)
        assert first.process.wait(timeout=60) == 1
    finally:
        first.stop()
    # The run finished, but the try records nothing: the callback stays pending, its task row RUNNING.
    state = combo.shell(
        "from integrations.models import WebhookDelivery; from django_tasks_db.models import DBTaskResult; "
        "print(repr((list(WebhookDelivery.objects.values_list('status', 'callback_status', 'callback_generation')), "
        "list(DBTaskResult.objects.filter(task_path='integrations.tasks.send_webhook_result')"
        ".values_list('status', flat=True)))))"
    )
    assert eval(state) == ([("succeeded", "pending", 1)], ["RUNNING"])
    receiver.delay = 0
    time.sleep(1.5)  # the try is now overdue by more than the second server's 1 s timeout

    second = Serve(combo, COMBO_REAPER_TIMEOUT_SECONDS="1")
    try:
        assert "Took up 1 webhook callback(s) left pending by a stopped task worker" in second.output()
        data = until(
            lambda: (d := delivery(combo, second.url, hook_id, delivery_id))["callback_status"] == "delivered" and d,
            what="the result to be sent again",
        )
        assert len(receiver.received) == 2
        first_try, second_try = (json.loads(got.body) for got in receiver.received)
        assert first_try == second_try and first_try["delivery_id"] == delivery_id and first_try["error"] is None
        assert [a["outcome"] for a in data["attempts"]] == ["delivered"]
        time.sleep(2)  # the periodic reaper does not send it a third time
        assert len(receiver.received) == 2
    finally:
        assert second.stop() == 0
