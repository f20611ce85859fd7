"""Permission classes shared by every app's API."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from combo.errors import ComboError, ErrorCode


class IsJWTUser(BasePermission):
    """Only a signed-in user's JWT, never an API key: a leaked key cannot mint or revoke keys."""

    def has_permission(self, request, view):
        principal = request.auth
        if principal is None or request.user is None:
            return False
        if getattr(principal, "api_key", None) is not None:
            raise ComboError(ErrorCode.JWT_REQUIRED)
        return True
