"""Serializer helpers shared by every app's API."""

from __future__ import annotations

from rest_framework import serializers


class StrictSerializerMixin:
    """Unknown fields are an error, not silently dropped: a typo must not pass."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        return super().to_internal_value(data)
