"""Row locks for the services' writes: lock a row, read it as stored, check the caller's precondition.

A service that changes or deletes an object it was handed may have been
handed it as read before another request changed or deleted it. Under the
row's lock it reads the row as stored, and the caller's precondition (an
If-Match naming an older version, an edit form opened on one) is judged on
that; its ComboError leaves everything as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db.models import Model

from combo.errors import ComboError, ErrorCode

Row = TypeVar("Row", bound=Model)


def lock(queryset) -> list:
    """Lock the rows for the rest of the transaction; their ids.

    FOR UPDATE on PostgreSQL; on SQLite the IMMEDIATE transaction holds the
    write lock already. Deleting: Django collects the rows a delete cascades
    to before it deletes them, and a question recorded in between was left
    pointing at a deleted session (the delete failed at commit); locked, the
    question waits and then finds its session gone.
    """
    return list(queryset.select_for_update().values_list("pk", flat=True))


def lock_stored(instance: Row, precondition: Callable[[Row], None] | None = None) -> None:
    """Lock the instance's row, read it as stored into the instance, then run `precondition(instance)`.

    In the caller's transaction. A row deleted since the instance was read is
    a 404: saving the instance would insert it again (Django inserts when an
    update finds no row), and a conditional delete has no version to judge.
    """
    if not lock(type(instance)._base_manager.filter(pk=instance.pk)):
        raise ComboError(ErrorCode.NOT_FOUND)
    instance.refresh_from_db()
    if precondition is not None:
        precondition(instance)


def lock_to_delete(instance: Row, precondition: Callable[[Row], None] | None = None) -> None:
    """Lock the instance's row before it is deleted; with a precondition, judged on the row as stored.

    Without one, a row already gone is no error (the delete then deletes
    nothing); with one, it is a 404, as for `lock_stored`.
    """
    if precondition is not None:
        lock_stored(instance, precondition)
    else:
        lock(type(instance)._base_manager.filter(pk=instance.pk))
