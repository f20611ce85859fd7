"""Housekeeping of the database task queue (django-tasks' `django_tasks_db`), done by the reaper.

The queue's rows are the tasks' records: what ran, when, and how it ended
(Django admin, "Task results"). Two kinds of rows would otherwise stay for good:

- A task a worker was running when it was killed (SIGKILL, out of memory)
  stays `RUNNING`: the queue never looks at it again. Once it has run longer
  than COMBO_REAPER_TIMEOUT_SECONDS it is marked `FAILED`, as `WorkerStopped`.
  What the task was doing is taken up by its own reaper (an answer marked
  interrupted, a webhook event marked failed, a callback sent again); this
  only corrects the queue's record. A task still alive after that long that
  finishes after all records its own outcome over the mark.
- Finished rows (successful or failed) pile up, one per upload and webhook
  event. Those finished more than COMBO_TASK_RESULTS_KEEP_DAYS ago (14; 0
  keeps them) are deleted, as `manage.py prune_db_task_results` would.

With another task backend (the immediate one, say) there is no queue and
both do nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger("combo.taskqueue")


class WorkerStopped(Exception):
    """The task worker running a task stopped before the task finished (recorded by the reaper)."""


WORKER_STOPPED_PATH = f"{WorkerStopped.__module__}.{WorkerStopped.__qualname__}"


def _rows() -> QuerySet | None:
    """This deployment's rows in the database queue, or None when tasks do not go through one."""
    from django_tasks import task_backends
    from django_tasks_db import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    backend = task_backends["default"]
    if not isinstance(backend, DatabaseBackend):
        return None
    return DBTaskResult.objects.filter(backend_name=backend.alias)


def reap_stopped_tasks(*, older_than_seconds: int | None = None, dry_run: bool = False) -> int:
    """Mark tasks left `RUNNING` by a stopped worker as `FAILED`; how many were (or would be) marked."""
    from django_tasks import TaskResultStatus

    rows = _rows()
    if rows is None:
        return 0
    timeout = older_than_seconds if older_than_seconds is not None else settings.COMBO_REAPER_TIMEOUT_SECONDS
    stale = rows.filter(status=TaskResultStatus.RUNNING, started_at__lt=timezone.now() - timedelta(seconds=timeout))
    if dry_run:
        return stale.count()
    # One conditional UPDATE: a task that finished meanwhile is no longer RUNNING and is left alone.
    marked = stale.update(
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        return_value=None,
        exception_class_path=WORKER_STOPPED_PATH,
        traceback=(
            f"{WORKER_STOPPED_PATH}: the task worker running this task stopped before it finished "
            f"(killed, or out of memory); marked failed after running longer than {timeout} s.\n"
        ),
    )
    if marked:
        logger.warning("marked %s task(s) left running by a stopped task worker as failed", marked)
    return marked


def prune_finished_tasks(*, keep_days: int | None = None, dry_run: bool = False) -> int:
    """Delete the rows of tasks finished more than `keep_days` ago (0: none); how many were (or would be)."""
    rows = _rows()
    days = settings.COMBO_TASK_RESULTS_KEEP_DAYS if keep_days is None else keep_days
    if rows is None or days <= 0:
        return 0
    old = rows.finished().filter(finished_at__lt=timezone.now() - timedelta(days=days))
    if dry_run:
        return old.count()
    deleted, _ = old.delete()
    if deleted:
        logger.info("deleted %s task result(s) finished more than %s day(s) ago", deleted, days)
    return deleted
