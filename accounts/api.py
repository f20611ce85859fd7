"""/v1/api-keys and /v1/auth/*: key management (JWT only) and token issuing."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import ExpiredTokenError, InvalidToken

from accounts import services
from accounts.models import ApiKey
from accounts.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from combo.api.permissions import IsJWTUser
from combo.api.viewsets import OwnedReadCreateDeleteViewSet
from combo.errors import ComboError, ErrorCode


class ApiKeyViewSet(OwnedReadCreateDeleteViewSet):
    """API keys of the signed-in user. DELETE revokes (the key stays listed as revoked)."""

    queryset = ApiKey.objects.all()
    serializer_class = ApiKeySerializer
    permission_classes = [IsJWTUser]

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = services.api_key_create(owner=request.user, **serializer.validated_data)
        body = ApiKeyCreatedSerializer(created.api_key).data | {"key": created.plain_key}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: ApiKeySerializer})
    def destroy(self, request, id=None):
        api_key = services.api_key_revoke(api_key=self.get_object())
        return Response(ApiKeySerializer(api_key).data)


class TokenObtainView(jwt_views.TokenObtainPairView):
    """Exchange a username and password for an access and a refresh token."""

    serializer_class = TokenObtainPairSerializer
    extra_error_statuses = ["401"]  # 10014: wrong username or password

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            raise ComboError(ErrorCode.LOGIN_FAILED) from None


class TokenRefreshView(jwt_views.TokenRefreshView):
    """Exchange a refresh token for a new access token."""

    serializer_class = TokenRefreshSerializer
    extra_error_statuses = ["401"]  # 10011 invalid, 10013 expired refresh token

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except InvalidToken as exc:
            # simplejwt reports an expired refresh token as merely invalid; the
            # client needs to know to log in again (10013), as with access tokens.
            if isinstance(exc.__cause__, ExpiredTokenError):
                raise ComboError(ErrorCode.CREDENTIAL_EXPIRED, "The refresh token has expired; log in again.") from None
            raise
