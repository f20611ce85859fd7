"""Database helpers for hot paths, where the ORM's per-object work costs more than the SQL.

Measured on the completion path (bench/README.md): `bulk_create` of a few
hundred messages spent most of its time building model instances (each sends
pre_init/post_init) and compiling placeholders field by field, while holding
the GIL the event loop needs. `insert_rows` sends the same INSERT from plain
dicts, with every value prepared as its model field prepares it (UUIDs and
aware datetimes directly, the rest by the field), so it works on every
database Django supports. On PostgreSQL it streams the rows with COPY
instead: a multi-row INSERT there has every placeholder converted and every
value quoted by psycopg, in Python, on every call (about half of the CPU of
writing a batch of questions, profiled).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import uuid
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, router
from django.db.models import DateTimeField, ForeignKey, Model, UUIDField

_DEFAULTS: dict[type[Model], dict[str, Any]] = {}
_PREPARERS: dict[tuple, list] = {}  # by model, database and time zone settings


def new_uuids(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs from one read of the OS's random source."""
    data = os.urandom(16 * count)
    return [uuid.UUID(bytes=data[i: i + 16], version=4) for i in range(0, 16 * count, 16)]


def row(model: type[Model], /, **values: Any) -> dict[str, Any]:
    """A row for `insert_rows`: `values` (by attname) over the fields' static defaults.

    Fields whose default is callable (ids, timestamps, lists) must be given,
    except JSON-style `list`/`dict` defaults, which are filled in empty.
    """
    defaults = _DEFAULTS.get(model)
    if defaults is None:
        defaults = {}
        for field in model._meta.concrete_fields:
            if field.has_default() and callable(field.default) and field.default not in (list, dict):
                continue
            defaults[field.attname] = field.get_default()
        _DEFAULTS[model] = defaults
    return {**defaults, **values}


def insert_rows(model: type[Model], rows: list[dict[str, Any]], /) -> None:
    """INSERT `rows` (dicts by attname, every concrete field given) in as few statements as allowed.

    No model instances, no signals (`bulk_create` sends none either), no
    returned ids: the caller chose them. A failure is Django's DatabaseError
    (IntegrityError, ...) on every database, COPY included.
    """
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    preparers = _preparers(model, connection)
    prepared = [[prepare(data[name]) for name, prepare in preparers] for data in rows]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for values in prepared:
                    copy.write_row(values)
            return
        one = "(" + ", ".join(["%s"] * len(fields)) + ")"
        per_statement = max(1, min(500, (connection.features.max_query_params or 10**6) // len(fields)))
        for start in range(0, len(prepared), per_statement):
            chunk = prepared[start: start + per_statement]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([one] * len(chunk)),
                [value for values in chunk for value in values],
            )


def _preparers(model: type[Model], connection) -> list[tuple[str, Any]]:
    """(attname, value -> database value) per concrete field: `field.get_db_prep_save`, typed where it is slow.

    Field by field, Django's preparation of a UUID costs about 3 us and of a
    datetime about 7.5 us (time zone checks, then conversion): most of the
    CPU of writing a question's rows. For a UUID and an aware datetime the
    same result is computed directly, as Django's own code computes it for
    this connection (tests/foundation/test_db_helpers.py compares the two on
    SQLite and PostgreSQL); anything else goes through the field.
    """
    key = (model, connection.alias, settings.USE_TZ, connection.timezone_name)
    found = _PREPARERS.get(key)
    if found is None:
        fields = model._meta.concrete_fields
        found = _PREPARERS[key] = [(field.attname, _preparer(field, connection)) for field in fields]
    return found


def _preparer(field, connection):
    slow = functools.partial(_prepare_slowly, field, connection)
    target = field.target_field if isinstance(field, ForeignKey) else field
    if type(target) is UUIDField and type(field) in (UUIDField, ForeignKey):
        native = connection.features.has_native_uuid_field

        def prepare_uuid(value, UUID=uuid.UUID):
            if type(value) is UUID:
                return value if native else value.hex
            return slow(value)

        return prepare_uuid
    if type(field) is DateTimeField and settings.USE_TZ:
        if connection.vendor == "postgresql":

            def prepare_datetime(value, datetime=dt.datetime):
                return value if type(value) is datetime and value.utcoffset() is not None else slow(value)

            return prepare_datetime
        if connection.vendor == "sqlite":
            zone = connection.timezone  # what timezone.make_naive() converts to, as Django's adapter does

            def prepare_datetime(value, datetime=dt.datetime):
                if type(value) is datetime and value.utcoffset() is not None:
                    return str(value.astimezone(zone).replace(tzinfo=None))
                return slow(value)

            return prepare_datetime
    return slow


def _prepare_slowly(field, connection, value):
    # A nullable field's None is NULL as it is (and preparing one costs as much as a value).
    if value is None and field.null:
        return None
    return field.get_db_prep_save(value, connection)


def write_batch(items: list, write) -> list[BaseException | None]:
    """`write(items)` as one batch; if that fails, `write([item])` for each, so only the bad ones fail.

    One result per item: None, or the DatabaseError of its own write. A batch
    of one re-raises its error.
    """
    if not items:
        return []
    try:
        write(items)
        return [None] * len(items)
    except DatabaseError:
        if len(items) == 1:
            raise
    results: list[BaseException | None] = []
    for item in items:
        try:
            write([item])
            results.append(None)
        except DatabaseError as exc:
            results.append(exc)
    return results
