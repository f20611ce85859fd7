"""`manage.py db_worker`, as `manage.py serve` runs it beside the servers: it outlives a moment without the database.

Had it exited, `serve` would take it for a dead server process and stop the
whole deployment, ending every running answer.
"""

from __future__ import annotations

import logging
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db.utils import OperationalError
from django_tasks_db.management.commands import db_worker
from django_tasks_db.models import DBTaskResult, DBTaskResultQuerySet

from integrations import tasks

pytestmark = pytest.mark.django_db


def test_the_worker_waits_out_a_database_that_went_away_and_runs_the_queue_after(monkeypatch, caplog):
    queued = tasks.send_webhook_result.enqueue("00000000-0000-0000-0000-000000000000", 1, 0, False)
    get_locked = DBTaskResultQuerySet.get_locked
    calls = []

    def away_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("consuming input failed: server closed the connection unexpectedly")
        return get_locked(self)

    monkeypatch.setattr(DBTaskResultQuerySet, "get_locked", away_once)
    caplog.set_level(logging.WARNING, logger="combo.worker")
    # In the test's transaction: its connection must stay open (tests/worker.py).
    with mock.patch.object(db_worker, "close_old_connections", lambda: None):
        call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", stdout=StringIO())
    assert len(calls) >= 2  # polled again after the failure
    assert DBTaskResult.objects.get(id=queued.id).status == "SUCCESSFUL", "run once the database was back"
    assert "the task queue's database is unavailable (OperationalError" in caplog.text
