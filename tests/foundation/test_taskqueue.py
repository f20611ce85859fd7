"""The reaper's housekeeping of the database task queue (combo.taskqueue), on real queue rows.

Rows are made as the product makes them (a task enqueued on the database
backend) and moved as a worker moves them (`claim`, `set_successful`); only
their times are set back to look old.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from combo import taskqueue
from combo.management.commands import serve
from integrations import tasks

pytestmark = pytest.mark.django_db


def _row(state: str, *, started_ago: float = 0, finished_ago: float = 0) -> DBTaskResult:
    """A queued task's row in `state` (READY, RUNNING, SUCCESSFUL or FAILED), started/finished so many seconds ago."""
    result = tasks.send_webhook_result.enqueue("00000000-0000-0000-0000-000000000000", 1, 0, False)
    row = DBTaskResult.objects.get(id=result.id)
    if state != "READY":
        row.claim("worker-1")
    if state == "SUCCESSFUL":
        row.set_successful(None)
    elif state == "FAILED":
        row.set_failed(ValueError("the callback URL refused"))
    now = timezone.now()
    DBTaskResult.objects.filter(id=row.id).update(
        started_at=now - timedelta(seconds=started_ago) if state != "READY" else None,
        finished_at=now - timedelta(seconds=finished_ago) if state in ("SUCCESSFUL", "FAILED") else None,
    )
    row.refresh_from_db()
    return row


@pytest.fixture
def old(settings):
    """Seconds ago that is past the reaper's timeout."""
    return settings.COMBO_REAPER_TIMEOUT_SECONDS + 60


def test_a_task_a_stopped_worker_left_running_is_marked_failed(old):
    stale = _row("RUNNING", started_ago=old)
    fresh = _row("RUNNING", started_ago=5)
    waiting = _row("READY")
    assert taskqueue.reap_stopped_tasks(dry_run=True) == 1
    assert DBTaskResult.objects.get(id=stale.id).status == "RUNNING"  # a dry run changes nothing

    assert taskqueue.reap_stopped_tasks() == 1
    stale.refresh_from_db()
    assert stale.status == "FAILED" and stale.finished_at is not None
    assert stale.exception_class_path == "combo.taskqueue.WorkerStopped"
    assert "stopped before it finished" in stale.traceback
    # What Django admin and the task API read back.
    [error] = stale.task_result.errors
    assert error.exception_class is taskqueue.WorkerStopped
    assert DBTaskResult.objects.get(id=fresh.id).status == "RUNNING"
    assert DBTaskResult.objects.get(id=waiting.id).status == "READY"
    assert taskqueue.reap_stopped_tasks() == 0  # once


def test_a_worker_that_finishes_after_the_mark_records_its_own_outcome(old):
    row = _row("RUNNING", started_ago=old)
    assert taskqueue.reap_stopped_tasks() == 1
    row.set_successful({"sent": True})  # the worker was alive after all
    row.refresh_from_db()
    assert row.status == "SUCCESSFUL" and row.return_value == {"sent": True} and row.traceback == ""


def test_finished_task_results_are_deleted_after_the_days_kept(settings):
    settings.COMBO_TASK_RESULTS_KEEP_DAYS = 14
    day = 24 * 3600
    gone = [_row("SUCCESSFUL", started_ago=15 * day, finished_ago=15 * day),
            _row("FAILED", started_ago=20 * day, finished_ago=20 * day)]
    kept = [_row("SUCCESSFUL", started_ago=13 * day, finished_ago=13 * day),
            _row("FAILED", started_ago=day, finished_ago=day // 2),
            _row("RUNNING", started_ago=30 * day),  # the other reaper's (it is not finished)
            _row("READY")]
    assert taskqueue.prune_finished_tasks(dry_run=True) == 2
    assert DBTaskResult.objects.count() == 6

    assert taskqueue.prune_finished_tasks() == 2
    assert set(DBTaskResult.objects.values_list("id", flat=True)) == {row.id for row in kept}
    assert not DBTaskResult.objects.filter(id__in=[row.id for row in gone]).exists()
    assert taskqueue.prune_finished_tasks(keep_days=1) == 1  # the one finished 13 days ago; not the one of 12 h


def test_zero_days_keeps_every_task_result(settings):
    settings.COMBO_TASK_RESULTS_KEEP_DAYS = 0
    _row("SUCCESSFUL", started_ago=400 * 24 * 3600, finished_ago=400 * 24 * 3600)
    assert taskqueue.prune_finished_tasks() == 0
    assert DBTaskResult.objects.count() == 1


def test_without_the_database_queue_there_is_nothing_to_do(settings, old):
    _row("RUNNING", started_ago=old)
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    assert taskqueue.reap_stopped_tasks() == 0
    assert taskqueue.prune_finished_tasks(keep_days=1) == 0


def test_the_reap_command_reports_the_queue_too(old, settings):
    settings.COMBO_TASK_RESULTS_KEEP_DAYS = 14
    _row("RUNNING", started_ago=old)
    _row("SUCCESSFUL", started_ago=30 * 24 * 3600, finished_ago=30 * 24 * 3600)
    out = StringIO()
    call_command("reap_interrupted", "--dry-run", stdout=out)
    assert "Would mark 1 queued task(s) left running failed." in out.getvalue()
    assert "Would delete 1 task result(s) older than 14 day(s)" in out.getvalue()
    out = StringIO()
    call_command("reap_interrupted", stdout=out)
    assert "Marked 1 queued task(s) left running failed." in out.getvalue()
    assert "Deleted 1 task result(s)" in out.getvalue()
    assert list(DBTaskResult.objects.values_list("status", flat=True)) == ["FAILED"]


# serve's rounds start as a request does, closing an unusable or expired connection: not inside a test's transaction.
@pytest.mark.django_db(transaction=True)
def test_serve_reports_what_its_start_up_reaping_did(old):
    _row("RUNNING", started_ago=old)
    command = serve.Command(stdout=StringIO())
    command._reap(say=True)
    assert "Marked 1 task(s) left running by a stopped task worker as failed." in command.stdout._out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_reaper_step_that_fails_does_not_stop_serve_or_the_other_steps(old, monkeypatch, caplog):
    """The supervisor loop must outlive a round whose database call failed: it logs and tries next time."""
    from django.db import OperationalError

    def answers_step():
        raise OperationalError("server closed the connection unexpectedly")

    row = _row("RUNNING", started_ago=old)
    monkeypatch.setattr(serve, "REAPERS", [(answers_step, "{}"), *serve.REAPERS[3:]])
    command = serve.Command(stdout=StringIO())
    with caplog.at_level(logging.ERROR, logger="combo.serve"):
        command._reap(say=False)
    assert "the reaper's answers_step failed" in caplog.text
    assert DBTaskResult.objects.get(id=row.id).status == "FAILED"  # the steps after it ran


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="a server-side connection to end is PostgreSQL's")
def test_after_the_database_drops_serves_connection_the_next_round_reconnects(old, caplog):
    """A PostgreSQL restart ends the supervisor's connection under it; the next round works (it failed for good)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    row = _row("RUNNING", started_ago=old)
    other = connections.create_connection("default")  # another session ends this one, as a restart would
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    command = serve.Command(stdout=StringIO())
    with caplog.at_level(logging.ERROR, logger="combo.serve"):
        command._reap(say=False)  # starts by dropping the dead connection, as a request would
    try:
        assert "failed" not in caplog.text
        assert DBTaskResult.objects.get(id=row.id).status == "FAILED"
    finally:
        # The ended session may sit in the connection pool: start the next tests on a fresh pool.
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
