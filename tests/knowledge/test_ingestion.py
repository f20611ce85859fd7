"""The ingestion task: all chunks or none, a reason a user can act on, and re-ingesting."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from agents.knowledge import services
from agents.knowledge.tasks import ingest_file
from agents.models import Chunk, KnowledgeFile

LONG_TEXT = "\n\n".join(
    f"Paragraph {i}: the harbour master logs every vessel that enters the port of Rotterdam." for i in range(60)
).encode()


def uploaded(owner, name="log.txt", data=LONG_TEXT) -> KnowledgeFile:
    file, created = services.knowledge_file_upload(owner=owner, upload=SimpleUploadedFile(name, data))
    assert created
    return file


def test_a_long_file_is_chunked_with_the_configured_size_and_overlap(alice, settings):
    settings.COMBO_CHUNK_SIZE, settings.COMBO_CHUNK_OVERLAP = 400, 60
    file = uploaded(alice.user)
    assert ingest_file.call(str(file.id)) == "ready"
    chunks = list(Chunk.objects.filter(file=file).order_by("index"))
    file.refresh_from_db()
    assert file.chunk_count == len(chunks) > 10
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(c.text) <= 400 for c in chunks)
    assert file.characters == len(LONG_TEXT.decode())


def test_a_database_failure_mid_ingestion_leaves_no_chunks_and_a_plain_reason(alice, monkeypatch):
    file = uploaded(alice.user)
    real_extract = services.extract

    def extract_with_a_clash(*args, **kwargs):
        result = real_extract(*args, **kwargs)
        # Two chunks with one index: the unique constraint fails half-way through the insert.
        chunks = list(result.chunks)
        chunks[-1] = dataclasses.replace(chunks[-1], index=0)
        return dataclasses.replace(result, chunks=chunks)

    monkeypatch.setattr(services, "extract", extract_with_a_clash)
    assert ingest_file.call(str(file.id)) == "failed"
    file.refresh_from_db()
    assert file.status == "failed" and file.failure_reason == services.REASON_INTERNAL
    assert "Traceback" not in file.failure_reason and "Integrity" not in file.failure_reason
    assert not Chunk.objects.exists() and file.chunk_count == 0


def test_reingesting_a_ready_file_replaces_its_chunks(alice):
    file = uploaded(alice.user)
    ingest_file.call(str(file.id))
    before = list(Chunk.objects.filter(file=file).order_by("index").values_list("index", "text"))
    services.knowledge_file_requeue(files=[file])
    file.refresh_from_db()
    assert file.status == "queued"
    assert ingest_file.call(str(file.id)) == "ready"
    assert list(Chunk.objects.filter(file=file).order_by("index").values_list("index", "text")) == before


def test_a_missing_original_fails_with_a_reason(alice):
    file = uploaded(alice.user)
    file.original.storage.delete(file.original.name)
    assert ingest_file.call(str(file.id)) == "failed"
    file.refresh_from_db()
    assert file.failure_reason == services.REASON_MISSING_ORIGINAL


def test_an_unexpected_parser_crash_is_logged_not_shown(alice, monkeypatch, caplog):
    file = uploaded(alice.user)

    def crash(*args, **kwargs):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(services, "extract", crash)
    assert ingest_file.call(str(file.id)) == "failed"
    file.refresh_from_db()
    assert file.failure_reason == services.REASON_INTERNAL and "secret" not in file.failure_reason
    assert "secret internals" in caplog.text


def test_a_finished_file_is_not_ingested_again_by_a_stray_task(alice):
    file = uploaded(alice.user)
    assert ingest_file.call(str(file.id)) == "ready"
    assert ingest_file.call(str(file.id)) == "skipped"
    assert ingest_file.call("00000000-0000-0000-0000-000000000000") == "skipped"


def test_an_upload_enqueues_one_task_on_commit(alice, django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        file = uploaded(alice.user)
    assert len(callbacks) == 1
    task = DBTaskResult.objects.get()
    assert task.task_path == "agents.knowledge.tasks.ingest_file"
    assert task.args_kwargs == {"args": [str(file.id)], "kwargs": {}}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="checks the SQLite FTS5 index")
def test_a_failed_reingest_also_empties_the_index(alice, monkeypatch):
    file = uploaded(alice.user)
    ingest_file.call(str(file.id))
    services.knowledge_file_requeue(files=[file])
    monkeypatch.setattr(services, "extract", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    ingest_file.call(str(file.id))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM agents_chunk_fts WHERE agents_chunk_fts MATCH 'harbour'")
        assert cursor.fetchone()[0] == 0


def _left_processing(file: KnowledgeFile, seconds_ago: float) -> None:
    """As a task worker killed mid-file leaves it: claimed, never finished."""
    from datetime import timedelta

    from django.utils import timezone

    KnowledgeFile.objects.filter(id=file.id).update(
        status=KnowledgeFile.Status.PROCESSING, updated_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_a_file_left_processing_by_a_killed_worker_is_marked_failed_by_the_reaper(alice, settings):
    from io import StringIO

    from django.core.management import call_command

    from combo.management.commands import serve

    settings.COMBO_REAPER_TIMEOUT_SECONDS = 60
    stuck, recent = uploaded(alice.user), uploaded(alice.user, "other.txt", b"Another file entirely.")
    assert ingest_file.call(str(stuck.id)) == "ready"  # a re-ingest that was cut off keeps no old chunks
    _left_processing(stuck, 120)
    _left_processing(recent, 10)  # may still be running

    assert services.knowledge_file_reap_interrupted(dry_run=True) == 1
    out = StringIO()
    call_command("reap_interrupted", stdout=out)
    assert "Marked 1 knowledge file(s) left processing failed." in out.getvalue()
    stuck.refresh_from_db()
    assert (stuck.status, stuck.chunk_count) == ("failed", 0)
    assert "interrupted" in stuck.failure_reason and "upload it again" in stuck.failure_reason
    assert not Chunk.objects.filter(file=stuck).exists()
    assert KnowledgeFile.objects.get(id=recent.id).status == "processing"
    assert services.knowledge_file_reap_interrupted in [step for step, _ in serve.REAPERS]
