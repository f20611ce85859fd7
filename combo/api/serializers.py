"""Serializer helpers shared by every app's API."""

from __future__ import annotations

from django.http import QueryDict
from rest_framework import serializers


class StrictSerializerMixin:
    # Unknown fields are an error, not silently dropped: a typo must not pass.
    # (A comment, not a docstring: drf-spectacular would inherit a docstring as
    # the description of every serializer built on this mixin, responses included.)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        # Nor is a known field silently dropped: a form or multipart body carries only
        # strings, and DRF ignores an object-valued field (an agent's `llm`) sent in one.
        if isinstance(data, QueryDict):
            objects = sorted(
                name for name, field in self.fields.items()
                if name in data and not field.read_only and isinstance(field, serializers.BaseSerializer)
            )
            if objects:
                raise serializers.ValidationError(
                    {name: ["This field is an object; send the request body as application/json."]
                     for name in objects}
                )
        if isinstance(data, dict) and not isinstance(data, QueryDict):
            wrong = _wrong_json_types(self.fields, data)
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


# A JSON body's values must already be of the field's type: DRF would turn 123
# into "123" for a string, "yes" or 1 into true for a boolean, 5 into a UUID.
# (Form and multipart bodies carry only strings, and DRF's parsing of those stays.)
_JSON_TYPES: tuple[tuple[type, tuple[type, ...]], ...] = (
    (serializers.BooleanField, (bool,)),
    (serializers.CharField, (str,)),
    (serializers.UUIDField, (str,)),
    (serializers.IntegerField, (int,)),
    (serializers.FloatField, (int, float)),
)


def _wrong_json_type(field, value) -> list[str] | None:
    for kind, allowed in _JSON_TYPES:
        if isinstance(field, kind):
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                return [str(field.error_messages["invalid"])]
            break
    return None


def _wrong_json_types(fields, data: dict) -> dict:
    wrong: dict = {}
    for name, field in fields.items():
        value = data.get(name)
        if field.read_only or value is None:
            continue
        if isinstance(field, serializers.ListField) and isinstance(value, list):
            # Each item as its field would be, keyed by position as DRF words a list's errors.
            items = {
                str(index): error for index, item in enumerate(value)
                if item is not None and (error := _wrong_json_type(field.child, item))
            }
            if items:
                wrong[name] = items
            continue
        error = _wrong_json_type(field, value)
        if error:
            wrong[name] = error
    return wrong
