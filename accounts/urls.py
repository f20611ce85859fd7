from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts import api

router = SimpleRouter(trailing_slash=False)
router.register("api-keys", api.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("auth/token", api.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh", api.TokenRefreshView.as_view(), name="auth-token-refresh"),
    *router.urls,
]
