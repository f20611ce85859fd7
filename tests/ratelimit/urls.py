"""Stand-in views at the real paths of operations that have not landed on this branch yet.

They let the rate-limit tests go through the real family table (combo.ratelimit.ROUTES),
the real DRF throttle and the real middleware: only the view bodies are fake.
Used with `pytest.mark.urls("tests.ratelimit.urls")`.
"""

from django.urls import include, path
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class _Question(serializers.Serializer):
    question = serializers.CharField()


class CompletionStandIn(APIView):
    """POST /v1/combo/agents/{agent_id}/completions: validates like the real one will."""

    def post(self, request, agent_id):
        serializer = _Question(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response({"answer": "ok", "reference": [], "session_id": None})


class UploadStandIn(APIView):
    """POST /v1/combo/files."""

    def post(self, request):
        return Response({"status": "queued"}, status=status.HTTP_201_CREATED)


class PingStandIn(APIView):
    """A default-family operation that accepts API keys and JWTs."""

    def get(self, request):
        return Response({"pong": True})


class WebhookEventStandIn(APIView):
    """POST /v1/integrations/webhooks/{webhook_id}/events: no bearer credential."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request, webhook_id):
        return Response({"accepted": True}, status=status.HTTP_202_ACCEPTED)


urlpatterns = [
    path("v1/combo/agents/<str:agent_id>/completions", CompletionStandIn.as_view()),
    path("v1/combo/files", UploadStandIn.as_view()),
    path("v1/combo/ping", PingStandIn.as_view()),
    path("v1/integrations/webhooks/<str:webhook_id>/events", WebhookEventStandIn.as_view()),
    path("", include("tests.urls")),
]
