"""Console pages of agents (mounted under /console/ in the `console` namespace)."""

from django.urls import path

from agents import views

urlpatterns = [
    path("agents/", views.agent_list, name="agents"),
    path("agents/new/", views.agent_create, name="agent-create"),
    path("agents/<uuid:agent_id>/", views.agent_edit, name="agent-edit"),
    path("agents/<uuid:agent_id>/delete/", views.agent_delete, name="agent-delete"),
    path("agents/<uuid:agent_id>/playground/", views.agent_playground, name="agent-playground"),
]
