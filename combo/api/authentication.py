"""DRF's view of Combo's bearer credentials (API keys and JWTs).

The reading itself lives in accounts.services.authenticate_bearer, shared with
the streaming path that runs outside DRF.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from accounts.services import authenticate_bearer
from combo.api.permissions import IsJWTUser
from combo.errors import ComboError


class CredentialRejected(exceptions.AuthenticationFailed):
    """AuthenticationFailed that remembers which 1xxxx code applies."""

    def __init__(self, error: ComboError):
        super().__init__(error.message)
        self.combo_error = error


class BearerAuthentication(BaseAuthentication):
    def authenticate(self, request):
        try:
            principal = authenticate_bearer(request.META.get("HTTP_AUTHORIZATION"))
        except ComboError as exc:
            raise CredentialRejected(exc) from None
        if principal is None:
            return None
        request._request.combo_principal = principal
        return principal.user, principal

    def authenticate_header(self, request):
        return 'Bearer realm="combo"'


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "combo.api.authentication.BearerAuthentication"
    name = ["ApiKeyAuth", "JWTAuth"]

    def get_security_requirement(self, auto_schema):
        # Alternatives, one requirement object each: OpenAPI ANDs the schemes named
        # in one object, which would ask clients for a key and a JWT at once.
        if any(isinstance(p, IsJWTUser) for p in auto_schema.view.get_permissions()):
            return [{"JWTAuth": []}]  # key management: an API key gets 403 there
        return [{"ApiKeyAuth": []}, {"JWTAuth": []}]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "ragflow-<key>",
                "description": "An API key from Personal settings → API keys: `Authorization: Bearer ragflow-...`.",
            },
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token from `POST /v1/auth/token`: `Authorization: Bearer <jwt>`.",
            },
        ]
