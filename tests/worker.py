"""Drain the background-task queue in the test process (django-tasks-db's own worker loop)."""

from __future__ import annotations

from unittest import mock


def run_worker() -> int:
    """Run django-tasks-db's worker loop until the queue is empty; returns the tasks it ran.

    In process, inside the test's transaction; only its connection recycling
    (close_old_connections, which would close the test's connection on
    PostgreSQL) is off. The real `manage.py db_worker` process runs in the live
    tests (tests/knowledge/test_knowledge_live.py, tests/production/).
    """
    from django_tasks_db.management.commands import db_worker
    from django_tasks_db.management.commands.db_worker import Worker

    worker = Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    with mock.patch.object(db_worker, "close_old_connections", lambda: None):
        worker.run()
    return worker._run_tasks
