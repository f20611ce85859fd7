"""Database helpers for hot paths, where the ORM's per-object work costs more than the SQL.

Measured on the completion path (bench/README.md): `bulk_create` of a few
hundred messages spent most of its time building model instances (each sends
pre_init/post_init) and compiling placeholders field by field, while holding
the GIL the event loop needs. `insert_rows` sends the same INSERT from plain
dicts, with every value still prepared by its model field, so it works on
every database Django supports. On PostgreSQL it streams the rows with COPY
instead: a multi-row INSERT there has every placeholder converted and every
value quoted by psycopg, in Python, on every call (about half of the CPU of
writing a batch of questions, profiled).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from django.db import DatabaseError, connections, router
from django.db.models import Model

_DEFAULTS: dict[type[Model], dict[str, Any]] = {}


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
    # A nullable field's None is NULL as it is (and preparing one costs as much as a value).
    prepared = [
        [
            None if field.null and data[field.attname] is None else field.get_db_prep_save(data[field.attname], connection)
            for field in fields
        ]
        for data in rows
    ]
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
