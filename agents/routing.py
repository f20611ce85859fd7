"""Routes served in front of Django by plain ASGI apps (see combo.routing)."""

from django.urls import re_path


def stream_routes():
    from agents.streaming import completions_asgi

    return [re_path(r"^v1/combo/agents/(?P<agent_id>[^/]+)/completions$", completions_asgi)]
