"""The product's URLs plus test-only views; never used outside the test suite."""

from django.urls import include, path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from combo.api.deprecation import deprecated
from combo.urls import handler404, handler500  # noqa: F401 - the root URLconf's error views, as in production


class DeprecatedPingView(APIView):
    @extend_schema(operation_id="test_deprecated_ping", responses={200: inline_serializer("Ping", {"pong": serializers.BooleanField()})})
    @deprecated(since="2026-11-01", sunset="2027-06-30")
    def get(self, request):
        """A test-only deprecated operation."""
        return Response({"pong": True})


class CrashView(APIView):
    @extend_schema(operation_id="test_crash", responses={200: None})
    def get(self, request):
        raise RuntimeError("secret-db-password=hunter2 leaked in a traceback")


def crash_page(request):
    raise RuntimeError("secret-db-password=hunter2 leaked in a traceback")


urlpatterns = [
    path("v1/test/deprecated-ping", DeprecatedPingView.as_view()),
    path("v1/test/crash", CrashView.as_view()),
    path("console/test/crash/", crash_page),
    path("", include("combo.urls")),
]
