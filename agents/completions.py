"""Running one completion: prepare in the database, generate detached, finish in the database.

The database work happens in two short synchronous steps (before the first byte
and after the last), so no thread or connection is held for a stream's life.
Both steps are batched (combo.batching): the questions that arrive while one
batch is in the database thread go together in the next, one transaction and
a few bulk queries for all of them, so a burst of questions costs the
database thread little more than one. Generation runs as its own asyncio
task: a client that disconnects stops receiving, not the answer, which is
saved complete either way (API.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from accounts.models import User
from agents import llm_config
from agents.knowledge_hooks import ready_files, retrieve_passages
from agents.llm.base import ChatMessage, ChatRequest, LLMError, Passage, Usage
from agents.models import Agent, Message, Session
from combo.batching import Batcher
from combo.db import insert_rows, new_uuids, row, write_batch
from combo.errors import ComboError, ErrorCode, database_unavailable

logger = logging.getLogger("combo.completions")

# Strong references to running generations: asyncio keeps only weak ones, and a
# detached answer must not be collected before it is saved.
_RUNNING: set[asyncio.Task] = set()

# Characters no database column stores and no UTF-8 stream carries: NUL, and
# UTF-16 surrogates outside a pair (JSON escapes such as "\\ud800" decode to them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """`text` without NUL characters and with each lone surrogate replaced by U+FFFD.

    A provider's text goes through this before anyone sees it, so what a
    caller is shown is what the session keeps, on SQLite and PostgreSQL alike.
    """
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(lambda match: "" if match.group() == "\x00" else "\ufffd", text)


@dataclass
class Prepared:
    session_id: uuid.UUID
    user_message_id: uuid.UUID
    message_id: uuid.UUID
    provider_name: str
    request: ChatRequest
    references: list[dict]
    created_session: bool


def _recent(session: Session) -> list[tuple[str, str]]:
    """The session's complete messages as (role, content), newest first."""
    return list(
        Message.objects.filter(session=session, status=Message.Status.COMPLETE)
        .order_by("-created_at", "-id")
        .values_list("role", "content")[:200]
    )


def _fit_history(recent: list[tuple[str, str]], budget: int) -> list[ChatMessage]:
    """Recent complete turns, newest first until the character budget is spent; oldest first."""
    picked: list[ChatMessage] = []
    used = 0
    for role, content in recent:
        if used + len(content) > budget:
            break
        picked.append(ChatMessage(role=role, content=content))
        used += len(content)
    picked.reverse()
    return picked


def _history(session: Session, budget: int) -> list[ChatMessage]:
    return _fit_history(_recent(session), budget)


def _system_prompt(agent: Agent, passages: list[Passage]) -> str:
    parts = [agent.instructions.strip()] if agent.instructions.strip() else []
    if passages:
        lines = [
            "Answer from the passages below when they are relevant, and cite them by their [id]. "
            "If they do not contain the answer, say so."
        ]
        for passage in passages:
            where = f" ({passage.position})" if passage.position else ""
            lines.append(f"[{passage.id}] {passage.file_name}{where}:\n{passage.content}")
        parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def reference_dict(passage: Passage, file_id: str) -> dict:
    return {
        "id": passage.id,
        "file_id": file_id,
        "file_name": passage.file_name,
        "content": passage.content,
        "score": passage.score,
        "position": passage.position,
    }


@dataclass(frozen=True)
class PrepareSpec:
    """One question to prepare: who asks which agent what, in which session (None: a new one)."""

    owner: User
    agent_id: Any
    question: str
    session_id: Any = None


def completion_prepare(*, owner: User, agent_id, question: str, session_id=None) -> Prepared:
    """Everything before the first byte, in one short transaction."""
    result = completion_prepare_many([PrepareSpec(owner, agent_id, question, session_id)])[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _as_uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


@dataclass
class Record:
    """The rows a prepared question adds, written by `completion_record_many`.

    The stream path writes them while the answer starts (its first text waits
    for them); `completion_prepare_many` writes them at once.
    """

    session_rows: list[dict]
    message_rows: list[dict]
    touched_session: uuid.UUID | None = None  # an existing session whose updated_at moves
    api_key: Any = None  # an API key whose last_used_at is due (accounts.services.api_keys_touch)


def completion_prepare_many(specs: list[PrepareSpec]) -> list[Prepared | BaseException]:
    """`completion_prepare` for many questions: one result (or error) per spec, in order.

    `completion_check_many`, then the records of the questions that passed written at once.
    """
    return record_now(completion_check_many(specs))


def record_now(checked: list[tuple[Any, Record] | BaseException]) -> list[Any]:
    """Checked items' values with their records written now; a record that fails is its item's error."""
    passed = [index for index, result in enumerate(checked) if not isinstance(result, BaseException)]
    errors = completion_record_many([checked[index][1] for index in passed])  # type: ignore[index]
    results = [result if isinstance(result, BaseException) else result[0] for result in checked]
    for index, error in zip(passed, errors):
        if error is not None:
            results[index] = error
    return results


def completion_check_many(specs: list[PrepareSpec]) -> list[tuple[Prepared, Record] | BaseException]:
    """Everything about many questions that only reads: agents, sessions, history, passages.

    One query for the agents, one for their ready files, one for the sessions
    asked about and one per such session for its history. Nothing is written:
    each result carries the `Record` of rows to write. Questions into the same
    session are prepared in order, each seeing the ones before it in its
    history, as if they had come one after the other; a question prepared
    later sees these once their records are written, which the stream path
    does before it checks anything else (agents.streaming).
    """
    results: list[tuple[Prepared, Record] | BaseException | None] = [None] * len(specs)
    agent_ids: dict[int, uuid.UUID] = {}
    for index, spec in enumerate(specs):
        agent_id = _as_uuid(spec.agent_id)
        if agent_id is None:
            results[index] = ComboError(ErrorCode.NOT_FOUND, "No agent with this id.")
        else:
            agent_ids[index] = agent_id
    agents = {agent.id: agent for agent in Agent.objects.filter(id__in=set(agent_ids.values()))} if agent_ids else {}

    ready: list[tuple[int, Agent, str, list]] = []  # (index, agent, provider, retrieved)
    files = ready_files(agents) if agents else {}
    for index, agent_id in agent_ids.items():
        spec = specs[index]
        agent = agents.get(agent_id)
        if agent is None or agent.owner_id != spec.owner.pk:
            results[index] = ComboError(ErrorCode.NOT_FOUND, "No agent with this id.")
            continue
        provider_name = agent.llm_provider or llm_config.default_provider_name()
        if provider_name not in llm_config.provider_names():
            results[index] = ComboError(
                ErrorCode.UPSTREAM_ERROR,
                f"The agent's provider {provider_name!r} is not configured on this deployment.",
            )
            continue
        if spec.session_id is not None and _as_uuid(spec.session_id) is None:
            results[index] = ComboError(ErrorCode.NOT_FOUND, "No session with this id for this agent.")
            continue
        ready.append((index, agent, provider_name, retrieve_passages(
            agent=agent, question=spec.question, names=files.get(agent.id, {})
        )))
    _plan_group(specs, ready, results)
    return results  # type: ignore[return-value]


def _plan_group(specs: list[PrepareSpec], ready: list, results: list) -> None:
    if not ready:
        return
    budget = settings.COMBO_PROMPT_HISTORY_CHARS
    ids = iter(new_uuids(4 * len(ready)))
    now = timezone.now()
    tick = 0  # rows of one batch get distinct, increasing times: history order stays exact

    def stamp():
        nonlocal tick
        tick += 1
        return now + timedelta(microseconds=tick)

    asked = {_as_uuid(specs[index].session_id) for index, *_ in ready if specs[index].session_id is not None}
    sessions = {session.id: session for session in Session.objects.filter(id__in=asked)} if asked else {}
    recent: dict[uuid.UUID, list[tuple[str, str]]] = {}
    for index, agent, provider_name, retrieved in ready:
        spec = specs[index]
        session_rows: list[dict] = []
        message_rows: list[dict] = []
        touched = None
        if spec.session_id is None:
            session_id = next(ids)
            created_at = stamp()
            session_rows.append(
                row(Session, id=session_id, agent_id=agent.id, owner_id=spec.owner.pk,
                    title=spec.question[:80], created_at=created_at, updated_at=created_at)
            )
            recent[session_id] = []
            if agent.opening_message:
                # The agent greets first, as in agents.services.session_create.
                message_rows.append(
                    row(Message, id=next(ids), session_id=session_id, role=Message.Role.ASSISTANT,
                        content=agent.opening_message, created_at=stamp())
                )
                recent[session_id].append((Message.Role.ASSISTANT, agent.opening_message))
            created = True
        else:
            session = sessions.get(_as_uuid(spec.session_id))
            if session is None or session.owner_id != spec.owner.pk or session.agent_id != agent.id:
                results[index] = ComboError(ErrorCode.NOT_FOUND, "No session with this id for this agent.")
                continue
            session_id = touched = session.id
            if session_id not in recent:
                recent[session_id] = _recent(session)
            created = False
        history = _fit_history(recent[session_id], budget)
        passages = [item.passage for item in retrieved]
        references = [reference_dict(item.passage, item.file_id) for item in retrieved]
        model = agent.llm_model or llm_config.default_model(provider_name)
        user_message_id, message_id = next(ids), next(ids)
        message_rows.append(
            row(Message, id=user_message_id, session_id=session_id, role=Message.Role.USER,
                content=spec.question, created_at=stamp())
        )
        message_rows.append(
            row(Message, id=message_id, session_id=session_id, role=Message.Role.ASSISTANT,
                status=Message.Status.IN_PROGRESS, references=references, provider=provider_name,
                model=model, created_at=stamp())
        )
        # A later question into this session, in this batch, sees this one.
        recent[session_id].insert(0, (Message.Role.USER, spec.question))
        messages = []
        system = _system_prompt(agent, passages)
        if system:
            messages.append(ChatMessage(role="system", content=system))
        messages.extend(history)
        messages.append(ChatMessage(role="user", content=spec.question))
        request = ChatRequest(
            messages=messages,
            model=model,
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
            passages=passages,
        )
        prepared = Prepared(
            session_id=session_id,
            user_message_id=user_message_id,
            message_id=message_id,
            provider_name=provider_name,
            request=request,
            references=references,
            created_session=created,
        )
        results[index] = (prepared, Record(session_rows, message_rows, touched))


def completion_record_many(records: list[Record]) -> list[BaseException | None]:
    """Write prepared questions' rows: one transaction, one multi-row INSERT per table.

    If the batch fails (a session deleted meanwhile, say), each record is
    written on its own, so only the bad one fails.
    """
    try:
        results: list[BaseException | None] = write_batch(records, _record_group)
    except DatabaseError as exc:  # a batch of one
        results = [exc]
    results = _deleted_meanwhile(records, results)
    for error in results:
        if error is not None and not isinstance(error, ComboError):
            logger.error("could not record a question", exc_info=error)
    return results


def _deleted_meanwhile(records: list[Record], results: list[BaseException | None]) -> list[BaseException | None]:
    """A question whose session or agent was deleted after its checks: the 404 it gets a moment later."""
    failed = [index for index, error in enumerate(results) if error is not None]
    if not failed:
        return results
    sessions = {records[index].touched_session for index in failed} - {None}
    agents = {data["agent_id"] for index in failed for data in records[index].session_rows}
    sessions &= set(Session.objects.filter(pk__in=sessions).values_list("pk", flat=True)) if sessions else set()
    agents &= set(Agent.objects.filter(pk__in=agents).values_list("pk", flat=True)) if agents else set()
    results = list(results)
    for index in failed:
        record = records[index]
        if record.touched_session is not None and record.touched_session not in sessions:
            results[index] = ComboError(ErrorCode.NOT_FOUND, "No session with this id for this agent.")
        elif any(data["agent_id"] not in agents for data in record.session_rows):
            results[index] = ComboError(ErrorCode.NOT_FOUND, "No agent with this id.")
    return results


def _record_group(records: list[Record]) -> None:
    from accounts.services import api_keys_touch

    with transaction.atomic():
        insert_rows(Session, [data for record in records for data in record.session_rows])
        insert_rows(Message, [data for record in records for data in record.message_rows])
        touched = {record.touched_session for record in records if record.touched_session is not None}
        if touched:
            Session.objects.filter(pk__in=touched).update(updated_at=timezone.now())
        stale = {record.api_key.pk: record.api_key for record in records if record.api_key is not None}
        if stale:
            api_keys_touch(list(stale.values()))


@dataclass(frozen=True)
class Outcome:
    """How one answer ended, to record on its assistant message."""

    message_id: uuid.UUID
    content: str
    status: str
    usage: Usage | None
    error: ComboError | None
    latency_ms: int
    finish_reason: str | None = None


_FINISH_FIELDS = [
    "content", "status", "error_code", "error_message", "prompt_tokens", "completion_tokens", "finish_reason",
    "latency_ms", "completed_at",
]


def completion_finish(
    *, message_id, content: str, status: str, usage: Usage | None, error: ComboError | None, latency_ms: int
) -> None:
    """Record the outcome, over a reaper's `interrupted` mark too: the reaper can only guess.

    The reaper marks answers older than COMBO_REAPER_TIMEOUT_SECONDS, which
    may still be generated by a live process; the answer it then finishes is
    the truth, and is kept. Any other finished status is never overwritten.
    """
    result = completion_finish_many([Outcome(message_id, content, status, usage, error, latency_ms)])[0]
    if result is not None:
        raise result


def completion_finish_many(outcomes: list[Outcome]) -> list[BaseException | None]:
    """`completion_finish` for many answers: one statement run for all rows, in one transaction.

    `UPDATE ... WHERE id = %s AND status IN ('in_progress', 'interrupted')` through the cursor's
    executemany, with each value prepared by its model field. The ORM's
    `bulk_update` builds a CASE expression per row and field: measured, it
    cost the database thread more than preparing the same questions.
    """
    now = timezone.now()
    connection = connections[Message.objects.db]
    meta = Message._meta
    fields = [meta.get_field(name) for name in _FINISH_FIELDS]
    status_field, pk_field = meta.get_field("status"), meta.pk
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(meta.db_table)} SET "
        + ", ".join(f"{quote(field.column)} = %s" for field in fields)
        + f" WHERE {quote(pk_field.column)} = %s AND {quote(status_field.column)} IN (%s, %s)"
    )
    unfinished = [
        status_field.get_db_prep_value(status, connection)
        for status in (Message.Status.IN_PROGRESS, Message.Status.INTERRUPTED)
    ]
    rows = []
    for outcome in outcomes:
        values = (
            outcome.content,
            outcome.status,
            outcome.error.error.code if outcome.error else None,
            outcome.error.message[:500] if outcome.error else "",
            outcome.usage.prompt_tokens if outcome.usage else None,
            outcome.usage.completion_tokens if outcome.usage else None,
            outcome.finish_reason,
            outcome.latency_ms,
            now,
        )
        rows.append(
            [field.get_db_prep_value(value, connection) for field, value in zip(fields, values)]
            + [pk_field.get_db_prep_value(outcome.message_id, connection), *unfinished]
        )

    def write(batch: list) -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.executemany(sql, batch)
            # A session was last changed by its last answer, not by the question before it.
            answered = [row[len(fields)] for row in batch]
            Session.objects.filter(messages__id__in=answered).update(updated_at=now)

    return write_batch(rows, write)


_finish_batch = Batcher(completion_finish_many)

# How long an answer's final write is tried again while the database cannot be reached
# (a restart, a failover), and the first pause between tries (doubled each time, at most 5 s).
SAVE_RETRY_SECONDS = 30.0
SAVE_RETRY_PAUSE = 0.5


def _too_long() -> LLMError:
    limit = settings.COMBO_MAX_ANSWER_CHARS
    return LLMError(
        ErrorCode.UPSTREAM_BAD_RESPONSE,
        f"The language model's answer grew past {limit:,} characters, the most kept for one answer, "
        "and was stopped there; give the agent a lower max tokens, or ask for less.",
    )


class _Unrecorded(Exception):
    """The run's question could not be written; its error is on the run."""


@dataclass
class CompletionRun:
    """One answer being generated; a reader follows `parts` and waits with `changed()`."""

    prepared: Prepared
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    error: ComboError | None = None
    status: str = Message.Status.IN_PROGRESS
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # The stream path starts a run while its question's rows are being written
    # (agents.streaming): done once they are. No text is shown before that,
    # and nothing is saved if they could not be written.
    recorded: asyncio.Future | None = None
    _waiters: list[asyncio.Future] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return "".join(self.parts)

    @property
    def finish_reason(self) -> str | None:
        """Why a complete answer ended: the model's finish_reason, "stop" if it did not say; else None."""
        if self.status != Message.Status.COMPLETE:
            return None
        return (self.usage.finish_reason if self.usage is not None else None) or "stop"

    def start(self) -> CompletionRun:
        task = asyncio.get_running_loop().create_task(self._run())
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        return self

    async def changed(self) -> None:
        """Until a part is added, the run finishes or `wake()` is called."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _run(self) -> None:
        started = time.monotonic()
        try:
            provider = llm_config.get_provider(self.prepared.provider_name)
            pieces = provider.stream(self.prepared.request)
            room = settings.COMBO_MAX_ANSWER_CHARS
            try:
                async for piece in pieces:
                    if self.recorded is not None:
                        await self._await_record()
                    if isinstance(piece, Usage):
                        self.usage = piece
                    elif piece:
                        piece = storable_text(piece)
                        if len(piece) > room:
                            piece = piece[:room]
                            room = -1
                        else:
                            room -= len(piece)
                        if piece:
                            self.parts.append(piece)
                            if self._waiters:
                                self.wake()
                        if room < 0:
                            raise _too_long()
            finally:
                await pieces.aclose()  # at once, also when the question could not be saved
            self.status = Message.Status.COMPLETE
        except _Unrecorded:
            self._close()
            return
        except LLMError as exc:
            self.error, self.status = exc, Message.Status.FAILED
        except asyncio.CancelledError:
            # The process is stopping: record the outcome, then let the cancel through.
            self.error = ComboError(ErrorCode.SHUTTING_DOWN)
            self.status = Message.Status.INTERRUPTED
            await self._save(started)
            raise
        except Exception:
            logger.exception("completion %s failed", self.prepared.message_id)
            self.error, self.status = ComboError(ErrorCode.INTERNAL_ERROR), Message.Status.FAILED
        await self._save(started)

    async def _await_record(self) -> None:
        """Until the question's rows are written; _Unrecorded (the run failed) if they could not be."""
        recorded = self.recorded
        if recorded is None:
            return
        if not recorded.done():
            await asyncio.wait([recorded])
        self.recorded = None
        if recorded.cancelled() or recorded.exception() is not None:
            failure = None if recorded.cancelled() else recorded.exception()
            self.error = failure if isinstance(failure, ComboError) else ComboError(
                ErrorCode.INTERNAL_ERROR, "The question could not be saved, so it was not answered; try again."
            )
            self.status = Message.Status.FAILED
            raise _Unrecorded

    def _close(self) -> None:
        self.finished.set()
        self.wake()

    async def _save(self, started: float) -> None:
        try:
            await self._await_record()
        except _Unrecorded:
            self._close()
            return
        outcome = Outcome(
            message_id=self.prepared.message_id,
            content=self.answer,
            status=self.status,
            usage=self.usage,
            error=self.error,
            latency_ms=int((time.monotonic() - started) * 1000),
            finish_reason=self.finish_reason,
        )
        deadline, pause = time.monotonic() + SAVE_RETRY_SECONDS, SAVE_RETRY_PAUSE
        try:
            while True:
                try:
                    await _finish_batch(outcome)
                    return
                except Exception as exc:
                    if database_unavailable(exc) is None or time.monotonic() + pause > deadline:
                        raise
                    logger.warning("could not record the outcome of %s yet (%s: %s); trying again in %.1f s",
                                   outcome.message_id, type(exc).__name__, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        except Exception:
            logger.exception("could not record the outcome of %s", self.prepared.message_id)
        finally:
            self._close()

    async def wait(self) -> None:
        await self.finished.wait()


def running_count() -> int:
    return len(_RUNNING)


async def cancel_running(timeout: float) -> None:
    """At shutdown: give answers `timeout` seconds to finish, then interrupt and record the rest."""
    tasks = list(_RUNNING)
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def _complete(prepared: Prepared) -> CompletionRun:
    run = CompletionRun(prepared).start()
    await run.wait()
    return run


def complete_sync(*, owner: User, agent_id, question: str, session_id=None) -> tuple[Prepared, CompletionRun]:
    """A whole non-streamed answer from synchronous code (background tasks).

    Raises ComboError when the question cannot start (unknown agent or session);
    a provider failure is recorded on the message and returned in `run.error`.
    """
    from asgiref.sync import async_to_sync

    prepared = completion_prepare(owner=owner, agent_id=agent_id, question=question, session_id=session_id)
    return prepared, async_to_sync(_complete)(prepared)
