"""Writes for agents and sessions: keyword-only, typed, atomic."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from django.db import transaction

from accounts.models import User
from agents.models import MAX_FILES_PER_AGENT, Agent, KnowledgeFile, Message, Session
from combo import rowlocks
from combo.changes import changed_fields
from combo.errors import ComboError, ErrorCode


@transaction.atomic
def agent_create(*, owner: User, files: Iterable[uuid.UUID] | None = None, **fields) -> Agent:
    agent = Agent(owner=owner, **fields)
    agent.full_clean()
    agent.save()
    if files is not None:
        agent_set_files(agent=agent, file_ids=files)
    return agent


@transaction.atomic
def agent_update(
    *, agent: Agent, files: Iterable[uuid.UUID] | None = None, precondition: Callable[[Agent], None] | None = None,
    **fields,
) -> Agent:
    """Change `fields` of the agent as it is now, under its row's lock.

    `agent` may have been read before another request changed or deleted it:
    saving it as read would undo the other change, or insert a deleted agent
    again (Django inserts when an update finds no row). Deleted: a 404.
    `precondition(agent)` runs under the lock on the agent as stored, before
    any change; its ComboError (an edit form opened on an older version of the
    agent, say) leaves everything as it was. Values equal to the stored ones
    change nothing: with no other change the agent is not saved, so its
    `updated_at` (and its ETag) stays.
    """
    rowlocks.lock_stored(agent, precondition)
    changed = changed_fields(agent, fields)
    files_change = files is not None and _file_ids(files) != set(agent.files.values_list("pk", flat=True))
    if not changed and not files_change:
        return agent
    for name, value in changed.items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    if files_change:
        agent_set_files(agent=agent, file_ids=files)
    return agent


def _file_ids(file_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    return {uuid.UUID(str(file_id)) for file_id in file_ids}


def files_not_owned(*, owner_id, file_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """The ids among `file_ids` that are not files of this owner (an agent may only have its owner's files)."""
    wanted = list(dict.fromkeys(uuid.UUID(str(file_id)) for file_id in file_ids))
    found = set(KnowledgeFile.objects.filter(owner_id=owner_id, id__in=wanted).values_list("id", flat=True))
    return [file_id for file_id in wanted if file_id not in found]


def agent_set_files(*, agent: Agent, file_ids: Iterable[uuid.UUID]) -> None:
    """Replace the agent's knowledge files; every id must be one of the agent owner's files."""
    wanted = list(dict.fromkeys(uuid.UUID(str(file_id)) for file_id in file_ids))
    missing = files_not_owned(owner_id=agent.owner_id, file_ids=wanted)
    if missing:
        # Another user's file answers exactly like a file that does not exist.
        raise ComboError(
            ErrorCode.VALIDATION_FAILED,
            "Invalid fields: file_ids.",
            errors={"file_ids": [f"You have no file with id {file_id}." for file_id in missing]},
        )
    agent.files.set(wanted)


@transaction.atomic
def agent_file_attach(*, agent: Agent, file: KnowledgeFile) -> bool:
    """Attach one of the agent owner's files; False when it was attached already.

    The console's "attach existing file"; the API writes the whole list instead
    (`agent_set_files`). The agent's row is locked so two attaches racing for
    the last of MAX_FILES_PER_AGENT places cannot both take it; an agent
    deleted since it was read is a 404 (the link would fail at commit).
    """
    if file.owner_id != agent.owner_id:
        # Another user's file answers exactly like a file that does not exist.
        raise ComboError(
            ErrorCode.VALIDATION_FAILED,
            "Invalid fields: file_ids.",
            errors={"file_ids": [f"You have no file with id {file.id}."]},
        )
    if not rowlocks.lock(Agent.objects.filter(pk=agent.pk)):
        raise ComboError(ErrorCode.NOT_FOUND)
    if agent.files.filter(pk=file.pk).exists():
        return False
    if agent.files.count() >= MAX_FILES_PER_AGENT:
        raise ComboError(
            ErrorCode.VALIDATION_FAILED,
            f"An agent may have at most {MAX_FILES_PER_AGENT} files; detach one first.",
            errors={"file_ids": [f"An agent may have at most {MAX_FILES_PER_AGENT} files."]},
        )
    agent.files.add(file)
    return True


@transaction.atomic
def agent_file_detach(*, agent: Agent, file: KnowledgeFile) -> bool:
    """Detach a file from the agent (the file itself is kept); False when it was not attached."""
    if not agent.files.filter(pk=file.pk).exists():
        return False
    agent.files.remove(file)
    return True


@transaction.atomic
def agent_delete(*, agent: Agent, precondition: Callable[[Agent], None] | None = None) -> None:
    """Deletes the agent with its sessions and messages.

    `precondition(agent)` runs under the lock on the agent as stored (an
    If-Match naming an older version, say); its ComboError deletes nothing.
    With a precondition, an agent deleted since it was read is a 404.
    """
    rowlocks.lock_to_delete(agent, precondition)
    rowlocks.lock(Session.objects.filter(agent_id=agent.pk))
    agent.delete()


@transaction.atomic
def session_create(*, agent: Agent, owner: User, title: str = "") -> Session:
    """A new session of the agent; a 404 if the agent was deleted since it was read (the insert failed at commit)."""
    if not rowlocks.lock(Agent.objects.filter(pk=agent.pk)):
        raise ComboError(ErrorCode.NOT_FOUND)
    session = Session.objects.create(agent=agent, owner=owner, title=title[:200])
    if agent.opening_message:
        # The agent greets first, so clients render one history for every session.
        Message.objects.create(session=session, role=Message.Role.ASSISTANT, content=agent.opening_message)
    return session


@transaction.atomic
def session_delete(*, session: Session) -> None:
    """Deletes the session with its messages."""
    rowlocks.lock(Session.objects.filter(pk=session.pk))
    session.delete()
