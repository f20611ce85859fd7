"""`manage.py db_worker`: django-tasks' database worker, which outlives a moment without the database.

django-tasks-db's worker exits with a traceback when a query fails for any
reason but a locked SQLite file: a PostgreSQL restart, failover or dropped
connection ended it. Under `manage.py serve` a worker that exits counts as a
dead server process, so one such blip stopped the whole deployment and ended
every running answer. This one logs the failure on `combo.worker`, waits
(its `--interval`, at least a second) and polls again on a new connection.
A task that was running when the database went away stays as the database
last saw it; the reaper takes it up (docs/production.md).

Listed before django_tasks_db in INSTALLED_APPS, so this command is the
`db_worker` that `manage.py` runs; its options are django-tasks-db's.
"""

from __future__ import annotations

import logging
import time

from django_tasks_db.management.commands import db_worker as base

from combo.cachebreaker import describe
from combo.errors import DATABASE_UNAVAILABLE_ERRORS

logger = logging.getLogger("combo.worker")

RETRY_SECONDS = 1.0  # the shortest wait before polling again after the database failed


class Worker(base.Worker):
    def run(self) -> None:
        while True:
            try:
                return super().run()
            except DATABASE_UNAVAILABLE_ERRORS as exc:
                if not self.running:
                    raise
                pause = max(self.interval, RETRY_SECONDS)
                logger.warning("the task queue's database is unavailable (%s); trying again in %.0f s",
                               describe(exc), pause)
                time.sleep(pause)
                if not self.running:
                    return


class Command(base.Command):
    def handle(self, *args, **options):
        # django-tasks-db's handle() builds the module's Worker: this one while it runs.
        original, base.Worker = base.Worker, Worker
        try:
            return super().handle(*args, **options)
        finally:
            base.Worker = original
