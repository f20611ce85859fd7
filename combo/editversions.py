"""Edit versions: a console edit form refuses to save over a change made since it was opened.

An edit page carries, in a hidden field, a version of the fields it edits as
they were stored when the page was made: one short digest per field. On
submit the service compares it, under the row's lock, with the fields as
stored now; if any of them changed (through the API, another tab, another
user of the account), nothing is saved and the page is shown again with the
user's input kept, the changed fields named and their saved values shown,
and the current version in the hidden field, so that saving the merged form
again replaces them knowingly.

Only the fields the form edits count: attaching a file to an agent or
rotating a webhook's secret does not block an edit. A form without the field
(a page opened before this check existed) is saved as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping

from django import forms
from django.core.exceptions import ValidationError

from combo.errors import ComboError, ErrorCode

FIELD = "edit_version"  # the hidden input's name

_PREFIX = "v1."
_DIGEST_CHARS = 12


def _digest(name: str, value) -> str:
    data = json.dumps([name, value], default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:_DIGEST_CHARS]


def of(values: Mapping[str, object]) -> str:
    """The version of these stored values (field name → value, in the form's order)."""
    return _PREFIX + ".".join(_digest(name, value) for name, value in values.items())


def changed_since(version: str, values: Mapping[str, object]) -> list[str]:
    """The names among `values` that differ from `version`; every name when the version is not one of these fields'."""
    names = list(values)
    digests = version[len(_PREFIX):].split(".") if version.startswith(_PREFIX) else []
    if len(digests) != len(names):
        return names
    return [name for name, digest in zip(names, digests, strict=True) if digest != _digest(name, values[name])]


class EditConflict(ComboError):
    """Fields the form edits changed since it was opened; nothing was saved."""

    def __init__(self, *, changed: list[str], values: Mapping[str, object]) -> None:
        super().__init__(
            ErrorCode.CONFLICT,
            "Changed since this form was opened: " + ", ".join(changed) + ".",
            errors={name: ["Changed since this form was opened."] for name in changed},
        )
        self.changed = changed
        self.values = dict(values)  # as stored now, read under the lock
        self.version = of(values)


def unchanged_since(version: str, values_of: Callable[[object], Mapping[str, object]]):
    """A check for a service to run under the row's lock, or None when the form carried no version.

    `values_of(instance)` gives the edited fields as stored; the check raises
    EditConflict when any differs from `version`.
    """
    if not version:
        return None

    def check(instance) -> None:
        values = values_of(instance)
        changed = changed_since(version, values)
        if changed:
            raise EditConflict(changed=changed, values=values)

    return check


# --- Showing a conflict in a console form -----------------------------------------


def _shown(field: forms.Field, value) -> str:
    """A stored value as the person editing reads it."""
    if isinstance(field, forms.ModelChoiceField):
        try:
            return field.label_from_instance(field.to_python(value)) if value is not None else "(none)"
        except ValidationError:
            return str(value)
    if isinstance(field, forms.BooleanField):
        return "Yes" if value else "No"
    if isinstance(field, forms.ChoiceField):
        label = dict(field.choices).get(value)
        if label is not None:
            return str(label)
    if value is None or value == "":
        return "(empty)"
    return str(value)


def refuse(form: forms.BaseForm, conflict: EditConflict, *, noun: str) -> list[dict]:
    """Put the conflict on the form (a message above it, a note on each changed field); the saved values to show.

    The form keeps what the user typed. Returns one entry per changed field,
    {"label", "value"}, for console/edit_conflict.html.
    """
    fields = [name for name in conflict.changed if name in form.fields]
    labels = [str(form[name].label) for name in fields]
    form.add_error(None, (
        f"This {noun} was changed since you opened this page: {', '.join(labels) or 'its settings'}. "
        "Nothing was saved. Your changes are still in the form, and the saved values are shown below; "
        "save again to replace the saved values with the form's."
    ))
    for name in fields:
        form.add_error(name, "Changed since you opened this page; its saved value is shown at the top of the form.")
    return [
        {"label": label, "value": _shown(form.fields[name], conflict.values[name])}
        for name, label in zip(fields, labels, strict=True)
    ]
