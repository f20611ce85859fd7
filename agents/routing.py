"""Routes served in front of Django by plain ASGI apps (see combo.routing)."""

from django.urls import re_path


def stream_routes():
    from agents.streaming import completions_asgi

    return [re_path(r"^v1/combo/agents/(?P<agent_id>[^/]+)/completions$", completions_asgi)]


def guarded_routes(django_asgi_app):
    """Django views that need a fence in front of Django's ASGI body spooling."""
    from agents.knowledge.uploads import upload_body_guard

    return [re_path(r"^v1/combo/files$", upload_body_guard(django_asgi_app))]
