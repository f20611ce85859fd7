"""Console pages of agents and their knowledge files (mounted under /console/ in the `console` namespace)."""

from django.urls import path

from agents import views

urlpatterns = [
    path("agents/", views.agent_list, name="agents"),
    path("agents/new/", views.agent_create, name="agent-create"),
    path("agents/<uuid:agent_id>/", views.agent_edit, name="agent-edit"),
    path("agents/<uuid:agent_id>/delete/", views.agent_delete, name="agent-delete"),
    path("agents/<uuid:agent_id>/playground/", views.agent_playground, name="agent-playground"),
    path("agents/<uuid:agent_id>/files/attach/", views.agent_file_attach, name="agent-file-attach"),
    path("agents/<uuid:agent_id>/files/<uuid:file_id>/detach/", views.agent_file_detach, name="agent-file-detach"),
    path("files/", views.file_list, name="files"),
    path("files/<uuid:file_id>/delete/", views.file_delete, name="file-delete"),
]
