"""combo.db.insert_rows writes what the ORM reads back, on SQLite and (in the production run) PostgreSQL's COPY."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from agents import services as agents
from agents.models import Message, Session
from combo.db import insert_rows, new_uuids, row, write_batch

AWKWARD = 'tab\there, newline\nthere, back\\slash, "quotes", \\N, \u00e9t\u00e9 \U0001f600, {braces}, %s, $1'


def test_rows_come_back_exactly_as_the_orm_reads_them(alice):
    agent = agents.agent_create(owner=alice.user, name="A", llm_provider="builtin")
    session_id, first, second = new_uuids(3)
    now = timezone.now()
    references = [{"id": "f:0", "content": AWKWARD, "score": 0.5, "position": {"page": 3}, "none": None}]
    with transaction.atomic():
        insert_rows(Session, [row(Session, id=session_id, agent_id=agent.id, owner_id=alice.user.pk,
                                  title=AWKWARD[:80], created_at=now, updated_at=now)])
        insert_rows(Message, [
            row(Message, id=first, session_id=session_id, role=Message.Role.USER, content=AWKWARD, created_at=now),
            row(Message, id=second, session_id=session_id, role=Message.Role.ASSISTANT, content="",
                status=Message.Status.IN_PROGRESS, references=references, provider="builtin", model="builtin",
                created_at=now + timedelta(microseconds=1)),
        ])
    session = Session.objects.get(id=session_id)
    assert (session.title, session.created_at, session.agent_id) == (AWKWARD[:80], now, agent.id)
    user, assistant = Message.objects.filter(session=session).order_by("created_at")
    assert (user.id, user.content, user.references, user.error_code, user.completed_at) == (
        first, AWKWARD, [], None, None)
    assert (assistant.id, assistant.references, assistant.status) == (second, references, "in_progress")
    assert Message.objects.filter(references__0__position__page=3).get() == assistant  # real JSON, not text


def test_a_bad_row_raises_a_database_error_and_the_batch_writes_nothing(alice):
    agent = agents.agent_create(owner=alice.user, name="A", llm_provider="builtin")
    session = agents.session_create(owner=alice.user, agent=agent)
    taken = Message.objects.create(session=session, role=Message.Role.USER, content="first").id
    now = timezone.now()

    def write(ids):
        with transaction.atomic():
            insert_rows(Message, [row(Message, id=message_id, session_id=session.id, role=Message.Role.USER,
                                      content="hi", created_at=now) for message_id in ids])

    fresh = uuid.uuid4()
    with pytest.raises(IntegrityError):  # a Django error, whatever the database: write_batch relies on it
        write([fresh, taken])
    assert not Message.objects.filter(content="hi").exists()
    # write_batch then writes each alone: only the bad one fails.
    results = write_batch([fresh, taken], write)
    assert results[0] is None and isinstance(results[1], DatabaseError)
    assert list(Message.objects.filter(content="hi").values_list("id", flat=True)) == [fresh]


def _samples(field) -> list:
    """Values of the kinds the typed preparation takes a shortcut for, and some it must not."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from django.db.models import DateTimeField, ForeignKey, UUIDField

    target = field.target_field if isinstance(field, ForeignKey) else field
    if isinstance(target, UUIDField):
        value = uuid.uuid4()
        return [value, str(value), value.hex] + ([None] if field.null else [])
    if isinstance(field, DateTimeField):
        moment = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
        return [moment, moment.replace(microsecond=0), moment.astimezone(ZoneInfo("Asia/Kolkata")),
                moment.astimezone(ZoneInfo("America/St_Johns")), timezone.now()] + ([None] if field.null else [])
    return []


@pytest.mark.django_db
def test_the_typed_preparation_gives_what_the_fields_give():
    """combo.db's shortcuts for UUIDs and datetimes, value for value, on this run's database."""
    from django.apps import apps
    from django.db import connection

    from combo.db import _preparers

    compared = 0
    for model in apps.get_models():
        if model._meta.app_label not in ("accounts", "agents", "integrations"):
            continue
        preparers = dict(_preparers(model, connection))
        for field in model._meta.concrete_fields:
            for value in _samples(field):
                expected = None if value is None else field.get_db_prep_save(value, connection)
                got = preparers[field.attname](value)
                assert (type(got), got) == (type(expected), expected), (model, field.attname, value)
                compared += 1
    assert compared > 50
