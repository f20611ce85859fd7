"""Writes for agents and sessions: keyword-only, typed, atomic."""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from agents.models import Agent, Message, Session


@transaction.atomic
def agent_create(*, owner: User, **fields) -> Agent:
    agent = Agent(owner=owner, **fields)
    agent.full_clean()
    agent.save()
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, **fields) -> Agent:
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent) -> None:
    """Deletes the agent with its sessions and messages."""
    agent.delete()


@transaction.atomic
def session_create(*, agent: Agent, owner: User, title: str = "") -> Session:
    session = Session.objects.create(agent=agent, owner=owner, title=title[:200])
    if agent.opening_message:
        # The agent greets first, so clients render one history for every session.
        Message.objects.create(session=session, role=Message.Role.ASSISTANT, content=agent.opening_message)
    return session


def session_delete(*, session: Session) -> None:
    session.delete()
