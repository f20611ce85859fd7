"""Results whose sending a killed task worker left `pending`: the reaper sends them again (or fails them).

A worker killed while it POSTs a result records no attempt, and leaves its
task row claimed RUNNING, so the queue never runs that try again.
`_left_sending` puts a delivery and its try's task row in that state; the
results go to a real HTTP server on 127.0.0.1 (conftest.receiver).
"""

import importlib
import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from integrations import services
from integrations.models import DeliveryAttempt, WebhookDelivery
from integrations.services import delivery_reap_callbacks, delivery_redeliver, delivery_run, delivery_send_attempt
from tests.integrations.test_reaper import RUN, SEND, _event


def _tasks(delivery, path, status):
    return [
        task for task in DBTaskResult.objects.filter(task_path=path, status=status)
        if task.args_kwargs["args"][0] == str(delivery.id)
    ]


def _run(delivery) -> WebhookDelivery:
    """The event's run as a worker does it; the result's first try is then queued, not sent."""
    [task] = _tasks(delivery, RUN, "READY")
    task.claim("worker")
    task.set_successful(delivery_run(delivery_id=str(delivery.id)))
    delivery.refresh_from_db()
    return delivery


def _left_sending(delivery, seconds_ago: float, *, claimed_ago: float | None = None) -> WebhookDelivery:
    """What a worker killed while sending leaves: the try's task row claimed (when it fell due, unless
    `claimed_ago` says otherwise), the callback pending since `seconds_ago`."""
    [task] = _tasks(delivery, SEND, "READY")
    task.claim("killed-worker")
    now = timezone.now()
    claimed_ago = seconds_ago if claimed_ago is None else claimed_ago
    DBTaskResult.objects.filter(id=task.id).update(started_at=now - timedelta(seconds=claimed_ago))
    WebhookDelivery.objects.filter(id=delivery.id).update(callback_due_at=now - timedelta(seconds=seconds_ago))
    delivery.refresh_from_db()
    assert delivery.callback_status == "pending"
    return delivery


def _state(delivery):
    return WebhookDelivery.objects.values_list(
        "callback_status", "callback_generation", "callback_try", "callback_due_at"
    ).get(id=delivery.id)


@pytest.fixture
def old(settings):
    """Seconds ago that is past the reaper's timeout."""
    return settings.COMBO_REAPER_TIMEOUT_SECONDS + 60


@pytest.fixture
def deferred(settings):
    """Retries a minute apart: the worker in these tests leaves them in the queue until their time."""
    settings.COMBO_WEBHOOK_RETRY_DELAYS = [60.0, 120.0]
    settings.COMBO_WEBHOOK_RETRY_JITTER = 0.0


@pytest.fixture
def hook(allow_loopback, receiver, make_webhook):
    return make_webhook(callback_url=receiver.url)


def test_a_callback_left_pending_past_the_timeout_is_sent_again_and_delivered(hook, receiver, post_event, drain, old):
    delivery = _left_sending(_run(_event(post_event, hook)), old)
    assert (delivery.status, delivery.callback_generation, delivery.callback_try) == ("succeeded", 1, 0)
    before = timezone.now()

    assert delivery_reap_callbacks() == 1

    # A new cycle that goes on with the next try, due now; the lost try counts.
    status, generation, next_try, due_at = _state(delivery)
    assert (status, generation, next_try) == ("pending", 2, 1) and before <= due_at <= timezone.now()
    assert delivery_reap_callbacks() == 0
    drain()
    [got] = receiver.received
    assert got.headers["x-combo-event"] == "completion.succeeded"
    assert got.headers["x-combo-delivery"] == str(delivery.id)
    assert json.loads(got.body)["answer"] == delivery.answer
    delivery.refresh_from_db()
    assert (delivery.callback_status, delivery.callback_due_at) == ("delivered", None)
    assert delivery.delivered_at is not None
    assert [(a.outcome, a.redelivery) for a in delivery.attempts.all()] == [("delivered", False)]
    # The killed worker's task row stays RUNNING; its try, should it run late, is superseded.
    assert [task.status for task in _tasks(delivery, SEND, "RUNNING")] == ["RUNNING"]
    assert delivery_send_attempt(delivery_id=str(delivery.id), generation=1, try_index=0) == "superseded"
    assert len(receiver.received) == 1 and delivery.attempts.count() == 1


def test_a_lost_retry_goes_on_with_the_try_after_it(deferred, hook, receiver, post_event, drain, old):
    receiver.statuses = [500, 200]
    delivery = _event(post_event, hook)
    drain()  # the run, then the first try: 500, a retry is scheduled
    delivery.refresh_from_db()
    [first] = delivery.attempts.all()
    assert first.outcome == "retry"
    assert (delivery.callback_try, delivery.callback_due_at) == (1, first.next_retry_at)
    # The retry's time came; the worker that took it was killed while sending.
    [retry] = _tasks(delivery, SEND, "READY")
    retry.run_after = timezone.now() - timedelta(seconds=old)
    retry.save(update_fields=["run_after"])
    _left_sending(delivery, old)

    assert delivery_reap_callbacks() == 1
    drain()

    delivery.refresh_from_db()
    assert (delivery.callback_status, delivery.callback_generation, delivery.callback_try) == ("delivered", 2, 2)
    assert [a.outcome for a in delivery.attempts.all()] == ["retry", "delivered"]
    assert len(receiver.received) == 2


def test_a_retry_scheduled_in_the_future_is_left_alone(deferred, hook, receiver, post_event, drain, old):
    receiver.statuses = [500, 200]
    delivery = _event(post_event, hook)
    drain()
    # Everything about it is old but its retry, which waits for its time.
    long_ago = timezone.now() - timedelta(seconds=old * 10)
    WebhookDelivery.objects.filter(id=delivery.id).update(created_at=long_ago, started_at=long_ago, finished_at=long_ago)
    DeliveryAttempt.objects.filter(delivery=delivery).update(attempted_at=long_ago)
    before = _state(delivery)
    assert before[0] == "pending" and before[3] > timezone.now()

    assert delivery_reap_callbacks(dry_run=True) == 0
    assert delivery_reap_callbacks() == 0

    assert _state(delivery) == before
    [retry] = _tasks(delivery, SEND, "READY")
    retry.run_after = timezone.now()  # its time comes
    retry.save(update_fields=["run_after"])
    drain()
    delivery.refresh_from_db()
    assert (delivery.callback_status, delivery.callback_generation) == ("delivered", 1)
    assert [a.outcome for a in delivery.attempts.all()] == ["retry", "delivered"]


def test_a_recent_try_and_one_waiting_for_a_worker_are_left_alone(
    hook, receiver, post_event, drain, settings, old
):
    recent = _left_sending(_run(_event(post_event, hook, "recent")), settings.COMBO_REAPER_TIMEOUT_SECONDS - 60)
    # Due long ago but still in the queue: no worker has taken it yet.
    waiting = _run(_event(post_event, hook, "waiting"))
    WebhookDelivery.objects.filter(id=waiting.id).update(callback_due_at=timezone.now() - timedelta(seconds=old * 10))
    recent_before, waiting_before = _state(recent), _state(waiting)

    assert delivery_reap_callbacks(dry_run=True) == 0
    assert delivery_reap_callbacks() == 0

    assert (_state(recent), _state(waiting)) == (recent_before, waiting_before)
    drain()  # a worker comes back: the waiting try is sent
    assert WebhookDelivery.objects.get(id=waiting.id).callback_status == "delivered"
    assert _state(recent) == recent_before
    assert [json.loads(got.body)["question"] for got in receiver.received] == ["waiting"]


def test_a_long_overdue_try_a_worker_is_sending_now_is_left_to_it(hook, receiver, post_event, drain, old):
    """After a worker outage longer than the timeout, the tries it takes up are overdue but alive."""
    taken = _left_sending(_run(_event(post_event, hook)), old * 10, claimed_ago=1)  # due long ago, claimed now
    before = _state(taken)
    assert delivery_reap_callbacks() == 0
    assert _state(taken) == before and receiver.received == []
    # Its worker died too: once the claim is older than the timeout, the try counts as lost.
    DBTaskResult.objects.filter(task_path=SEND, status="RUNNING").update(
        started_at=timezone.now() - timedelta(seconds=old)
    )
    assert delivery_reap_callbacks() == 1
    drain()
    assert WebhookDelivery.objects.get(id=taken.id).callback_status == "delivered"
    assert len(receiver.received) == 1


def test_two_reapers_racing_send_it_once(hook, receiver, post_event, drain, old, monkeypatch):
    delivery = _left_sending(_run(_event(post_event, hook)), old)
    real = services._send_queued
    seen = {}

    def another_reaper_first(delivery_id, generation, started_after):
        # Both reapers listed the callback; the other one takes it before this one does.
        if "other" not in seen:
            seen["other"] = None
            seen["other"] = delivery_reap_callbacks()
        return real(delivery_id, generation, started_after)

    monkeypatch.setattr(services, "_send_queued", another_reaper_first)
    assert delivery_reap_callbacks() == 0
    assert seen == {"other": 1}
    monkeypatch.setattr(services, "_send_queued", real)
    assert delivery_reap_callbacks() == 0
    assert len(_tasks(delivery, SEND, "READY")) == 1
    drain()
    assert delivery_reap_callbacks() == 0
    drain()

    assert len(receiver.received) == 1
    delivery.refresh_from_db()
    assert (delivery.callback_status, delivery.callback_generation, delivery.callback_try) == ("delivered", 2, 1)
    assert [a.outcome for a in delivery.attempts.all()] == ["delivered"]


def test_a_callback_out_of_retries_is_marked_failed(hook, receiver, post_event, drain, settings, old):
    delivery = _left_sending(_run(_event(post_event, hook)), old)
    # The lost try was the last one the retry schedule allows.
    WebhookDelivery.objects.filter(id=delivery.id).update(callback_try=len(settings.COMBO_WEBHOOK_RETRY_DELAYS))

    assert delivery_reap_callbacks() == 1

    status, generation, _, due_at = _state(delivery)
    assert (status, generation, due_at) == ("failed", 1, None)
    assert not _tasks(delivery, SEND, "READY")
    drain()
    assert receiver.received == [] and delivery_reap_callbacks() == 0


def test_a_lost_try_of_a_redelivery_is_resent_as_one(hook, receiver, post_event, drain, old):
    delivery = _event(post_event, hook)
    drain()
    delivery_redeliver(delivery=WebhookDelivery.objects.get(id=delivery.id))
    _left_sending(delivery, old)

    assert delivery_reap_callbacks() == 1
    drain()

    delivery.refresh_from_db()
    assert (delivery.callback_status, delivery.callback_generation) == ("delivered", 3)
    assert [(a.outcome, a.redelivery) for a in delivery.attempts.all()] == [("delivered", False), ("delivered", True)]
    assert len(receiver.received) == 2


def test_a_dry_run_counts_and_changes_nothing(hook, receiver, post_event, drain, old):
    one = _left_sending(_run(_event(post_event, hook, "one")), old)
    two = _left_sending(_run(_event(post_event, hook, "two")), old)
    before = [_state(one), _state(two)]

    assert delivery_reap_callbacks(dry_run=True) == 2
    assert delivery_reap_callbacks(dry_run=True, older_than_seconds=old + 60) == 0

    assert [_state(one), _state(two)] == before
    assert not DBTaskResult.objects.filter(task_path=SEND, status="READY").exists()
    drain()
    assert receiver.received == []
    assert delivery_reap_callbacks() == 2
    drain()
    assert sorted(json.loads(got.body)["question"] for got in receiver.received) == ["one", "two"]


def test_the_migration_dates_callbacks_already_pending(deferred, hook, receiver, post_event, drain, old):
    receiver.statuses = [500]
    retried = _event(post_event, hook, "retried")
    drain()  # one try, a retry scheduled
    first_try = _run(_event(post_event, hook, "first try"))
    [attempt] = DeliveryAttempt.objects.filter(delivery=retried)
    WebhookDelivery.objects.filter(id__in=[retried.id, first_try.id]).update(callback_try=0, callback_due_at=None)

    migration = importlib.import_module("integrations.migrations.0002_callback_due")
    migration.date_pending_callbacks(apps, None)

    assert _state(retried)[1:] == (1, 1, attempt.next_retry_at)
    assert _state(first_try)[1:] == (1, 0, first_try.finished_at)


def test_the_admin_shows_when_a_pending_callback_is_due(hook, post_event, client, admin_user, old):
    delivery = _left_sending(_run(_event(post_event, hook)), old)
    client.force_login(admin_user)
    page = client.get(f"/admin/integrations/webhookdelivery/{delivery.id}/change/").content.decode()
    assert "Next callback try:" in page and "Callback try due at:" in page
