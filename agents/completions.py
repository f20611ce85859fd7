"""Running one completion: prepare in the database, generate detached, finish in the database.

The database work happens in two short synchronous steps (before the first byte
and after the last), so no thread or connection is held for a stream's life.
Generation runs as its own asyncio task: a client that disconnects stops
receiving, not the answer, which is saved complete either way (API.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from agents import llm_config
from agents.knowledge_hooks import retrieve_passages
from agents.llm.base import ChatMessage, ChatRequest, LLMError, Passage, Usage
from agents.models import Agent, Message, Session
from agents.services import session_create
from combo.errors import ComboError, ErrorCode

logger = logging.getLogger("combo.completions")

# Strong references to running generations: asyncio keeps only weak ones, and a
# detached answer must not be collected before it is saved.
_RUNNING: set[asyncio.Task] = set()
_END = object()


@dataclass
class Prepared:
    session_id: uuid.UUID
    user_message_id: uuid.UUID
    message_id: uuid.UUID
    provider_name: str
    request: ChatRequest
    references: list[dict]
    created_session: bool


def _history(session: Session, budget: int) -> list[ChatMessage]:
    """Recent complete turns, newest first until the character budget is spent."""
    picked: list[ChatMessage] = []
    used = 0
    recent = (
        Message.objects.filter(session=session, status=Message.Status.COMPLETE)
        .order_by("-created_at", "-id")
        .values_list("role", "content")[:200]
    )
    for role, content in recent:
        if used + len(content) > budget:
            break
        picked.append(ChatMessage(role=role, content=content))
        used += len(content)
    picked.reverse()
    return picked


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


def completion_prepare(*, owner: User, agent_id, question: str, session_id=None) -> Prepared:
    """Everything before the first byte, in one short transaction."""
    agent = Agent.objects.filter(owner=owner, id=agent_id).first()
    if agent is None:
        raise ComboError(ErrorCode.NOT_FOUND, "No agent with this id.")
    provider_name = agent.llm_provider or llm_config.default_provider_name()
    if provider_name not in llm_config.provider_names():
        raise ComboError(
            ErrorCode.UPSTREAM_ERROR,
            f"The agent's provider {provider_name!r} is not configured on this deployment.",
        )
    retrieved = retrieve_passages(agent=agent, question=question)
    with transaction.atomic():
        created = False
        if session_id is None:
            session = session_create(agent=agent, owner=owner, title=question[:80])
            created = True
        else:
            session = Session.objects.filter(id=session_id, owner=owner, agent=agent).first()
            if session is None:
                raise ComboError(ErrorCode.NOT_FOUND, "No session with this id for this agent.")
        history = _history(session, settings.COMBO_PROMPT_HISTORY_CHARS)
        passages = [item.passage for item in retrieved]
        references = [reference_dict(item.passage, item.file_id) for item in retrieved]
        user_message = Message.objects.create(session=session, role=Message.Role.USER, content=question)
        assistant = Message.objects.create(
            session=session,
            role=Message.Role.ASSISTANT,
            status=Message.Status.IN_PROGRESS,
            references=references,
            provider=provider_name,
            model=agent.llm_model or llm_config.default_model(provider_name),
        )
        Session.objects.filter(pk=session.pk).update(updated_at=timezone.now())
    messages = []
    system = _system_prompt(agent, passages)
    if system:
        messages.append(ChatMessage(role="system", content=system))
    messages.extend(history)
    messages.append(ChatMessage(role="user", content=question))
    request = ChatRequest(
        messages=messages,
        model=assistant.model,
        temperature=agent.temperature,
        max_tokens=agent.max_tokens,
        passages=passages,
    )
    return Prepared(
        session_id=session.id,
        user_message_id=user_message.id,
        message_id=assistant.id,
        provider_name=provider_name,
        request=request,
        references=references,
        created_session=created,
    )


def completion_finish(
    *, message_id, content: str, status: str, usage: Usage | None, error: ComboError | None, latency_ms: int
) -> None:
    """Record the outcome. Only an in_progress row is finished, so a reaper's mark is never overwritten."""
    Message.objects.filter(id=message_id, status=Message.Status.IN_PROGRESS).update(
        content=content,
        status=status,
        error_code=error.error.code if error else None,
        error_message=(error.message[:500] if error else ""),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        latency_ms=latency_ms,
        completed_at=timezone.now(),
    )


@dataclass
class CompletionRun:
    """One answer being generated; readers take deltas from `queue`."""

    prepared: Prepared
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    error: ComboError | None = None
    status: str = Message.Status.IN_PROGRESS
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def answer(self) -> str:
        return "".join(self.parts)

    def start(self) -> "CompletionRun":
        task = asyncio.get_running_loop().create_task(self._run())
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        return self

    async def _run(self) -> None:
        started = time.monotonic()
        try:
            provider = llm_config.get_provider(self.prepared.provider_name)
            async for piece in provider.stream(self.prepared.request):
                if isinstance(piece, Usage):
                    self.usage = piece
                elif piece:
                    self.parts.append(piece)
                    self.queue.put_nowait(piece)
            self.status = Message.Status.COMPLETE
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

    async def _save(self, started: float) -> None:
        try:
            await sync_to_async(completion_finish)(
                message_id=self.prepared.message_id,
                content=self.answer,
                status=self.status,
                usage=self.usage,
                error=self.error,
                latency_ms=int((time.monotonic() - started) * 1000),
            )
        except Exception:
            logger.exception("could not record the outcome of %s", self.prepared.message_id)
        finally:
            self.finished.set()
            self.queue.put_nowait(_END)

    async def wait(self) -> None:
        await self.finished.wait()


def running_count() -> int:
    return len(_RUNNING)


async def cancel_running(timeout: float) -> None:
    """At shutdown: give answers `timeout` seconds to finish, then interrupt and record the rest."""
    tasks = list(_RUNNING)
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


END = _END


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
