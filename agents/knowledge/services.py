"""Writes for knowledge files: upload, ingest, re-ingest, delete.

Upload decides synchronously what can be decided from the first bytes (empty,
unsupported, misnamed, too large) and stores nothing on a refusal; parsing,
chunking and indexing run later in `knowledge_file_ingest`, called by the
background task agents.knowledge.tasks.ingest_file. Ingestion writes a file's
chunks and its `ready` status in one transaction, so a file is never
half-indexed: it has all its chunks, or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_delete
from django.utils import timezone

from accounts.models import User
from agents.knowledge.parsing import ParseError
from agents.knowledge.pipeline import extract
from agents.knowledge.sniff import (
    HEAD_BYTES,
    REASON_EMPTY,
    REASON_MISMATCH,
    REASON_UNSUPPORTED,
    UnsupportedFile,
    detect,
)
from agents.models import Agent, Chunk, KnowledgeFile
from agents.services import agent_file_attach
from combo import rowlocks
from combo.errors import ComboError, ErrorCode

logger = logging.getLogger("combo.knowledge")

_REFUSALS = {
    REASON_EMPTY: ErrorCode.FILE_EMPTY,
    REASON_UNSUPPORTED: ErrorCode.FILE_TYPE_UNSUPPORTED,
    REASON_MISMATCH: ErrorCode.FILE_CONTENT_MISMATCH,
}

# Failure reasons a user can act on, for failures that are not the file's fault.
REASON_MISSING_ORIGINAL = "The stored copy of this file is missing; delete the file and upload it again."
REASON_INTERNAL = (
    "This file could not be processed because of an unexpected error on the server. "
    "Try again later (delete and upload it again), or ask an operator to re-ingest it."
)
REASON_INTERRUPTED = (
    "Processing this file was interrupted: the server stopped while it was being read. "
    "Delete the file and upload it again, or ask an operator to re-ingest it."
)
_BULK_BATCH = 500


def too_large_error(size: int | None = None) -> ComboError:
    limit = settings.COMBO_MAX_UPLOAD_BYTES
    readable = f"{limit:,} bytes ({limit / (1024 * 1024):.3g} MiB)"
    said = f"The file is {size:,} bytes; the limit is {readable}." if size is not None else (
        f"The file is over the limit of {readable}."
    )
    return ComboError(
        ErrorCode.FILE_TOO_LARGE, f"{said} Split it into smaller files.", extra={"limit_bytes": limit}
    )


def _head(upload: UploadedFile) -> bytes:
    upload.seek(0)
    head = upload.read(HEAD_BYTES)
    upload.seek(0)
    return head


def _sha256(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    upload.seek(0)
    for piece in upload.chunks():
        digest.update(piece)
    upload.seek(0)
    return digest.hexdigest()


def knowledge_file_upload(
    *, owner: User, upload: UploadedFile, agent: Agent | None = None
) -> tuple[KnowledgeFile, bool]:
    """Accept an uploaded file for ingestion; (file, created).

    Refuses (ComboError, nothing stored) what sniffing can tell from the head.
    The same bytes from the same owner return the existing file (created False),
    attached to `agent` if given, and are not stored or indexed again.
    """
    size = upload.size or 0
    if size > settings.COMBO_MAX_UPLOAD_BYTES:
        raise too_large_error(size)
    name = (upload.name or "upload").strip() or "upload"
    try:
        kind = detect(name, _head(upload), size)
    except UnsupportedFile as exc:
        raise ComboError(_REFUSALS.get(exc.reason_code, ErrorCode.FILE_TYPE_UNSUPPORTED), exc.message) from None
    sha256 = _sha256(upload)

    existing = KnowledgeFile.objects.filter(owner=owner, sha256=sha256).first()
    if existing is not None:
        return _attach_existing(existing, agent), False

    file = KnowledgeFile(owner=owner, name=name[:255], size=size, sha256=sha256, kind=kind)
    file.original.save(name, upload, save=False)  # writes the original to storage first
    try:
        with transaction.atomic():
            file.save(force_insert=True)
            if agent is not None:
                _attach(agent, file)
            transaction.on_commit(lambda: enqueue_ingestion(file.id))
    except IntegrityError:
        # The same bytes won a race with this request: keep theirs, drop ours.
        file.original.delete(save=False)
        existing = KnowledgeFile.objects.filter(owner=owner, sha256=sha256).first()
        if existing is None:
            raise
        return _attach_existing(existing, agent), False
    except BaseException:
        file.original.delete(save=False)
        raise
    return file, True


def _attach_existing(file: KnowledgeFile, agent: Agent | None) -> KnowledgeFile:
    if agent is not None:
        _attach(agent, file)
    return file


def _attach(agent: Agent, file: KnowledgeFile) -> None:
    """Attach as the agent's file_ids would (its file limit holds); a refusal names the upload's agent_id.

    An agent deleted since it was read is refused like one that does not exist.
    """
    try:
        agent_file_attach(agent=agent, file=file)
    except ComboError as exc:
        if exc.error == ErrorCode.NOT_FOUND:
            raise ComboError(
                ErrorCode.VALIDATION_FAILED, "Invalid fields: agent_id.",
                errors={"agent_id": ["You have no agent with this id."]},
            ) from None
        raise ComboError(
            exc.error, exc.message, errors={"agent_id": [exc.message]} if exc.errors else None
        ) from None


def enqueue_ingestion(file_id: uuid.UUID) -> None:
    from agents.knowledge.tasks import ingest_file

    ingest_file.enqueue(str(file_id))


@transaction.atomic
def knowledge_file_requeue(*, files: Iterable[KnowledgeFile]) -> int:
    """Queue files for ingestion again (operators' "re-ingest"); their chunks stay until replaced."""
    count = 0
    for file in files:
        KnowledgeFile.objects.filter(pk=file.pk).update(
            status=KnowledgeFile.Status.QUEUED, failure_reason="", updated_at=timezone.now()
        )
        transaction.on_commit(lambda file_id=file.pk: enqueue_ingestion(file_id))
        count += 1
    return count


def knowledge_file_delete(*, file: KnowledgeFile, precondition: Callable[[KnowledgeFile], None] | None = None) -> None:
    """Delete a file, its chunks (the full-text index follows), its agent links and its stored original.

    `precondition(file)` runs under the file row's lock on the file as stored
    (an If-Match naming an older version, say: its ingestion moved on); its
    ComboError deletes nothing. With a precondition, a file deleted since it
    was read is a 404.
    """
    with transaction.atomic():
        if precondition is not None:
            rowlocks.lock_stored(file, precondition)
        file.delete()  # the original goes when this commits (_original_deleted)


def _original_deleted(sender, instance: KnowledgeFile, **kwargs) -> None:
    """Every deleted file's stored original goes once the deletion commits.

    A signal, not only knowledge_file_delete: a file deleted along with its
    owner (a user deleted in Django admin) must not leave its original behind.
    """
    name = instance.original.name
    if name:
        storage = instance.original.storage
        transaction.on_commit(lambda: storage.delete(name))


def connect_signals() -> None:
    post_delete.connect(_original_deleted, sender=KnowledgeFile, dispatch_uid="combo.knowledge.original_deleted")


def knowledge_file_reap_interrupted(*, older_than_seconds: int | None = None, dry_run: bool = False) -> int:
    """Mark files left `processing` by a task worker that died as failed; how many were (or would be) marked.

    A worker killed mid-file (SIGKILL, out of memory, `serve` after the grace
    period) records nothing, and the task queue does not run the file again, so
    its status would stay `processing` for good. Like the other reapers this
    can only guess from age (COMBO_REAPER_TIMEOUT_SECONDS since the worker took
    the file up); an ingestion still running that finishes later stores its
    outcome over the mark. The file is not ingested again by itself: one that
    killed its worker could kill the next.
    """
    timeout = older_than_seconds if older_than_seconds is not None else settings.COMBO_REAPER_TIMEOUT_SECONDS
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = KnowledgeFile.objects.filter(status=KnowledgeFile.Status.PROCESSING, updated_at__lt=cutoff)
    if dry_run:
        return stale.count()
    marked = 0
    for file_id in list(stale.values_list("id", flat=True)):
        with transaction.atomic():
            now = timezone.now()
            # Still stuck: a file that finished (or was taken up again) meanwhile is left alone.
            if not stale.filter(id=file_id).update(
                status=KnowledgeFile.Status.FAILED,
                failure_reason=REASON_INTERRUPTED,
                chunk_count=0,
                characters=0,
                pages=None,
                processed_at=now,
                updated_at=now,
            ):
                continue
            Chunk.objects.filter(file_id=file_id).delete()  # a cut-off re-ingest keeps no old chunks
        marked += 1
        logger.warning("knowledge file %s: its processing was left unfinished; marked failed", file_id)
    return marked


def knowledge_file_ingest(*, file_id: uuid.UUID | str) -> str:
    """Parse, chunk and index one file; returns the outcome ("ready", "failed", "skipped").

    Never raises for a problem with the file: that ends as status `failed` with
    a reason for the uploader. Unexpected errors are logged with their
    traceback and the file gets a generic reason (never the traceback).
    """
    claimed = KnowledgeFile.objects.filter(
        id=file_id, status__in=[KnowledgeFile.Status.QUEUED, KnowledgeFile.Status.PROCESSING]
    ).update(status=KnowledgeFile.Status.PROCESSING, failure_reason="", updated_at=timezone.now())
    if not claimed:
        return "skipped"  # deleted, or already processed by another run
    file = KnowledgeFile.objects.filter(id=file_id).first()
    if file is None:
        return "skipped"  # deleted in the moment since it was claimed
    try:
        with file.original.open("rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ValueError):
        return _fail(file.id, REASON_MISSING_ORIGINAL)
    except OSError:
        logger.exception("cannot read the original of knowledge file %s", file.id)
        return _fail(file.id, REASON_INTERNAL)
    try:
        extraction = extract(
            file.name,
            data,
            size=settings.COMBO_CHUNK_SIZE,
            overlap=settings.COMBO_CHUNK_OVERLAP,
        )
    except (UnsupportedFile, ParseError) as exc:
        return _fail(file.id, exc.message)
    except Exception:
        logger.exception("parsing knowledge file %s failed unexpectedly", file.id)
        return _fail(file.id, REASON_INTERNAL)
    try:
        return _store(file.id, extraction)
    except Exception:
        logger.exception("indexing knowledge file %s failed", file.id)
        return _fail(file.id, REASON_INTERNAL)


def _store(file_id, extraction) -> str:
    """Swap in the new chunks and mark the file ready, all or nothing."""
    with transaction.atomic():
        # The row lock orders this against a concurrent delete: either the file
        # is gone already (nothing to index) or the delete waits for this commit.
        if not KnowledgeFile.objects.select_for_update().filter(id=file_id).exists():
            return "skipped"
        Chunk.objects.filter(file_id=file_id).delete()
        _insert_chunks(file_id, extraction.chunks)
        now = timezone.now()
        KnowledgeFile.objects.filter(id=file_id).update(
            status=KnowledgeFile.Status.READY,
            kind=extraction.kind,
            failure_reason="",
            chunk_count=len(extraction.chunks),
            characters=extraction.document.characters,
            pages=extraction.document.pages,
            processed_at=now,
            updated_at=now,
        )
    return "ready"


def _insert_chunks(file_id, chunks) -> None:
    if connection.vendor == "postgresql":
        # COPY is about twice as fast as multi-row INSERTs here, and ingestion
        # time on PostgreSQL is mostly these writes (and the tsvector the
        # database computes for each row). Same connection, same transaction.
        with connection.cursor() as cursor:
            copy_sql = 'COPY agents_chunk (file_id, "index", text, position) FROM STDIN'
            with cursor.cursor.copy(copy_sql) as copy:
                for chunk in chunks:
                    position = json.dumps(chunk.position) if chunk.position is not None else None
                    copy.write_row((file_id, chunk.index, chunk.text, position))
        return
    Chunk.objects.bulk_create(
        (Chunk(file_id=file_id, index=c.index, text=c.text, position=c.position) for c in chunks),
        batch_size=_BULK_BATCH,
    )


def _fail(file_id, reason: str) -> str:
    """Mark failed with no chunks (a failed file is never searchable, even after a re-ingest)."""
    with transaction.atomic():
        Chunk.objects.filter(file_id=file_id).delete()
        now = timezone.now()
        KnowledgeFile.objects.filter(id=file_id).update(
            status=KnowledgeFile.Status.FAILED,
            failure_reason=reason[:1000],
            chunk_count=0,
            characters=0,
            pages=None,
            processed_at=now,
            updated_at=now,
        )
    return "failed"
