from __future__ import annotations

from django.utils import timezone
from drf_spectacular.contrib import rest_framework_simplejwt as spectacular_jwt
from rest_framework import serializers
from rest_framework_simplejwt import serializers as jwt_serializers

from accounts.models import ApiKey
from combo.api.serializers import StrictSerializerMixin


class ApiKeySerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="active, expired or revoked")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "status", "created_at", "last_used_at", "expires_at", "revoked_at"]
        read_only_fields = fields


class ApiKeyCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    name = serializers.CharField(max_length=100, allow_blank=False, trim_whitespace=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown once, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]
        read_only_fields = fields



class TokenObtainPairSerializer(StrictSerializerMixin, jwt_serializers.TokenObtainPairSerializer):
    """simplejwt's, refusing unknown fields and non-string values like every other body."""


class TokenRefreshSerializer(StrictSerializerMixin, jwt_serializers.TokenRefreshSerializer):
    """simplejwt's, refusing unknown fields and non-string values like every other body."""


# drf-spectacular's descriptions of simplejwt's two serializers, for these
# subclasses; as for every strict body, no other property is accepted.
def _strict(schema: dict, direction: str) -> dict:
    if direction == "request":
        schema["additionalProperties"] = False
    return schema


class _TokenObtainPairSchema(spectacular_jwt.TokenObtainPairSerializerExtension):
    target_class = TokenObtainPairSerializer

    def map_serializer(self, auto_schema, direction):
        return _strict(super().map_serializer(auto_schema, direction), direction)


class _TokenRefreshSchema(spectacular_jwt.TokenRefreshSerializerExtension):
    target_class = TokenRefreshSerializer

    def map_serializer(self, auto_schema, direction):
        return _strict(super().map_serializer(auto_schema, direction), direction)
