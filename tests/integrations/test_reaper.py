"""Events whose run a killed task worker left `running`: the reaper marks them failed (20004) and sends that.

A worker killed mid-run leaves two rows behind: the delivery, claimed
`running` by delivery_run, and django-tasks-db's own task row, claimed
RUNNING by the worker loop. `_left_running` puts both in that state; a real
killed worker is in test_reaper_live.py.
"""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

import agents.completions
from integrations.models import WebhookDelivery
from integrations.services import delivery_reap_interrupted

from .conftest import OFFLINE_NOTICE

DELIVERIES = "/v1/integrations/webhooks/{}/deliveries"
RUN = "integrations.tasks.run_webhook_event"
SEND = "integrations.tasks.send_webhook_result"
MESSAGE = "The server stopped before this event's answer finished; send the event again with a new X-Combo-Delivery id to retry."


def _event(post_event, hook, question="Review this PR for me"):
    status, body, _ = post_event(hook.id, {"question": question}, secret=hook.secret)
    assert status == 202, body
    return WebhookDelivery.objects.get(id=body["data"]["delivery_id"])


def _left_running(delivery, seconds_ago: float) -> WebhookDelivery:
    """What a worker killed mid-run leaves: its task row claimed, the delivery claimed `seconds_ago`."""
    [task] = [
        task for task in DBTaskResult.objects.filter(task_path=RUN, status="READY")
        if task.args_kwargs["args"] == [str(delivery.id)]
    ]
    task.claim("killed-worker")
    WebhookDelivery.objects.filter(id=delivery.id, status="queued").update(
        status="running", started_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    delivery.refresh_from_db()
    return delivery


@pytest.fixture
def old(settings):
    """Seconds ago that is past the reaper's timeout."""
    return settings.COMBO_REAPER_TIMEOUT_SECONDS + 60


def test_a_run_left_running_past_the_timeout_is_marked_failed_and_the_receiver_told(
    allow_loopback, receiver, make_webhook, post_event, drain, api, alice, old
):
    hook = make_webhook(callback_url=receiver.url)
    delivery = _left_running(_event(post_event, hook), old)
    started_at = delivery.started_at
    before = timezone.now()

    assert delivery_reap_interrupted() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.error_message) == ("failed", 20004, MESSAGE)
    assert before <= delivery.finished_at <= timezone.now() and delivery.started_at == started_at
    assert delivery.answer == "" and delivery.callback_status == "pending"
    drain()
    [got] = receiver.received
    assert got.headers["x-combo-event"] == "completion.failed"
    assert got.headers["x-combo-delivery"] == str(delivery.id)
    sent = json.loads(got.body)
    assert sent["event"] == "completion.failed" and sent["answer"] == ""
    assert sent["error"] == {"code": 20004, "message": MESSAGE}
    delivery.refresh_from_db()
    assert delivery.callback_status == "delivered"
    # The queue never runs the event again: the killed worker's task row stays RUNNING.
    assert DBTaskResult.objects.get(task_path=RUN).status == "RUNNING"

    status, body, _ = api.get(f"{DELIVERIES.format(hook.id)}/{delivery.id}", auth=alice.key_auth)
    assert status == 200
    assert (body["data"]["status"], body["data"]["error"]) == ("failed", {"code": 20004, "message": MESSAGE})


def test_a_recent_run_and_a_queued_event_are_left_alone(make_webhook, post_event, drain, settings, old):
    hook = make_webhook()
    stale = _left_running(_event(post_event, hook, "stale"), old)
    recent = _left_running(_event(post_event, hook, "recent"), settings.COMBO_REAPER_TIMEOUT_SECONDS - 60)
    queued = _event(post_event, hook, "queued")
    # Received long ago and still waiting for a worker: the queue still holds its run.
    WebhookDelivery.objects.filter(id=queued.id).update(created_at=timezone.now() - timedelta(seconds=old * 10))

    assert delivery_reap_interrupted() == 1

    assert WebhookDelivery.objects.get(id=stale.id).status == "failed"
    assert WebhookDelivery.objects.get(id=recent.id).status == "running"
    assert WebhookDelivery.objects.get(id=queued.id).status == "queued"
    assert not DBTaskResult.objects.filter(task_path=SEND).exists()
    drain()  # a worker comes back: the queued event runs
    queued.refresh_from_db()
    assert queued.status == "succeeded" and queued.answer.startswith(OFFLINE_NOTICE)
    assert WebhookDelivery.objects.get(id=recent.id).status == "running"


def test_reaping_twice_sends_the_failed_result_once(allow_loopback, receiver, make_webhook, post_event, drain, old):
    hook = make_webhook(callback_url=receiver.url)
    delivery = _left_running(_event(post_event, hook), old)

    assert delivery_reap_interrupted() == 1
    finished_at = WebhookDelivery.objects.get(id=delivery.id).finished_at
    assert delivery_reap_interrupted() == 0
    drain()
    assert delivery_reap_interrupted() == 0
    drain()

    assert len(receiver.received) == 1
    delivery.refresh_from_db()
    assert delivery.finished_at == finished_at and delivery.callback_generation == 1
    assert [a.outcome for a in delivery.attempts.all()] == ["delivered"]


def test_without_a_callback_url_the_mark_is_only_stored(make_webhook, post_event, old):
    hook = make_webhook()
    delivery = _left_running(_event(post_event, hook), old)
    assert delivery_reap_interrupted() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.callback_status) == ("failed", 20004, "none")
    assert not DBTaskResult.objects.filter(task_path=SEND).exists()


def test_a_dry_run_counts_and_changes_nothing(allow_loopback, receiver, make_webhook, post_event, old):
    hook = make_webhook(callback_url=receiver.url)
    _left_running(_event(post_event, hook, "one"), old)
    _left_running(_event(post_event, hook, "two"), old)

    assert delivery_reap_interrupted(dry_run=True) == 2
    assert delivery_reap_interrupted(dry_run=True, older_than_seconds=old + 60) == 0

    assert list(WebhookDelivery.objects.values_list("status", "error_code", "finished_at", "callback_status")) == [
        ("running", None, None, "none")
    ] * 2
    assert not DBTaskResult.objects.filter(task_path=SEND).exists()
    assert delivery_reap_interrupted() == 2


def test_the_command_reports_answers_and_events(make_webhook, post_event):
    hook = make_webhook()
    delivery = _left_running(_event(post_event, hook), 30)

    def run(*args) -> str:
        out = io.StringIO()
        call_command("reap_interrupted", *args, stdout=out)
        # Its first three lines; the task queue's lines are tests/foundation/test_taskqueue.py's.
        return "".join(out.getvalue().splitlines(keepends=True)[:3])

    assert run() == (
        "Marked 0 answer(s) interrupted.\nMarked 0 webhook event(s) failed.\nTook up 0 webhook callback(s) left pending.\n"
    )
    assert run("--older-than", "10", "--dry-run") == (
        "Would mark 0 answer(s) interrupted.\nWould mark 1 webhook event(s) failed.\n"
        "Would take up 0 webhook callback(s) left pending.\n"
    )
    assert WebhookDelivery.objects.get(id=delivery.id).status == "running"
    assert run("--older-than", "10") == (
        "Marked 0 answer(s) interrupted.\nMarked 1 webhook event(s) failed.\nTook up 0 webhook callback(s) left pending.\n"
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("failed", 20004)


def test_a_run_that_finishes_after_the_mark_replaces_it(
    allow_loopback, receiver, make_webhook, post_event, drain, monkeypatch
):
    """The reaper only guesses from age: a live run that outlasts the timeout is marked, then its outcome wins."""
    hook = make_webhook(callback_url=receiver.url)
    delivery = _event(post_event, hook)
    real = agents.completions.complete_sync
    seen = {}

    def answer_while_the_reaper_runs(**kwargs):
        result = real(**kwargs)  # the agent answers (offline provider)...
        # ...but only after the reaper, in another process, took the run for a dead one.
        seen["reaped"] = delivery_reap_interrupted(older_than_seconds=0)
        seen["marked"] = WebhookDelivery.objects.values_list("status", "error_code", "callback_generation").get(
            id=delivery.id
        )
        return result

    monkeypatch.setattr(agents.completions, "complete_sync", answer_while_the_reaper_runs)
    drain()

    assert seen == {"reaped": 1, "marked": ("failed", 20004, 1)}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.error_message) == ("succeeded", None, "")
    assert delivery.answer.startswith(OFFLINE_NOTICE) and delivery.message_id is not None
    assert delivery.finished_at >= delivery.started_at
    # The late outcome started a new send cycle; the reaper's cycle, still queued behind
    # the busy worker, saw it was superseded and sent nothing.
    assert delivery.callback_generation == 2 and delivery.callback_status == "delivered"
    [got] = receiver.received
    assert got.headers["x-combo-event"] == "completion.succeeded"
    assert json.loads(got.body)["error"] is None
    assert [a.outcome for a in delivery.attempts.all()] == ["delivered"]
