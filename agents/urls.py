from django.urls import path
from rest_framework.routers import SimpleRouter

from agents import api, streaming
from agents.knowledge.api import KnowledgeFileViewSet

router = SimpleRouter(trailing_slash=False)
router.register("agents", api.AgentViewSet, basename="agent")
router.register("files", KnowledgeFileViewSet, basename="file")
router.register(r"agents/(?P<agent_id>[^/]+)/sessions", api.AgentSessionViewSet, basename="agent-session")

# The completions route is an async view; `.cls` lets drf-spectacular document it.
completions = streaming.completions_view
completions.cls = api.CompletionsSchemaView
completions.initkwargs = {}

urlpatterns = [
    path("agents/<str:agent_id>/completions", completions, name="agent-completions"),
    path("sessions/<str:id>", api.SessionView.as_view(), name="session-detail"),
    *router.urls,
]
