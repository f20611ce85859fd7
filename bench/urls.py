"""The product's URLs plus /bench/bare-agents: the same query and JSON as
GET /v1/combo/agents, with no authentication, rate limiting or envelope.
Only the API throughput benchmark loads this module."""

from django.http import JsonResponse
from django.urls import include, path

from agents.models import Agent
from agents.serializers import AgentSerializer


def bare_agents(request):
    owner = request.GET["owner"]
    agents = Agent.objects.prefetch_related("files").filter(owner_id=owner).order_by("-created_at", "-id")[:20]
    return JsonResponse({"items": AgentSerializer(agents, many=True).data, "next_cursor": None})


urlpatterns = [
    path("bench/bare-agents", bare_agents),
    path("", include("combo.urls")),
]
