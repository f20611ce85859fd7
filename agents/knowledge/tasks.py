"""Background work for knowledge files, through Django's Tasks API (django-tasks).

Enqueued by the upload on commit; run by `manage.py db_worker` (started by
`manage.py serve`, i.e. `make run`). The queue lives in the database, so queued
work survives a restart.
"""

from __future__ import annotations

from django_tasks import task

from agents.knowledge.services import knowledge_file_ingest


@task()
def ingest_file(file_id: str) -> str:
    """Parse, chunk and index one uploaded file; returns "ready", "failed" or "skipped"."""
    return knowledge_file_ingest(file_id=file_id)
