"""What an update would change: a write whose values equal the stored ones changes nothing.

A PATCH that sends the values an object already has must leave it as it is:
no save, so its `updated_at` and therefore its ETag (combo.api.conditional)
stay, and nothing a change sets off happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Model


def changed_fields(instance: Model, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `fields` whose value differs from the instance's (a related object compared by its key)."""
    changed = {}
    for name, value in fields.items():
        field = instance._meta.get_field(name)
        if field.many_to_one:
            current, new = getattr(instance, field.attname), value.pk if isinstance(value, Model) else value
        else:
            current, new = getattr(instance, name), value
        if current != new:
            changed[name] = value
    return changed
