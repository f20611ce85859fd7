"""HTTP routing in front of Django: the completion stream gets its own async path.

Everything goes to Django except agents.routing.stream_routes(), which
runs as a plain ASGI app (no sync middleware hops, no thread per stream).
"""

from __future__ import annotations

from channels.routing import URLRouter
from django.urls import re_path

def http_application(django_asgi_app):
    from django.conf import settings  # noqa: F401  (settings are ready here)

    routes = []
    try:
        from agents.routing import stream_routes

        routes.extend(stream_routes())
    except ImportError:
        pass
    routes.append(re_path(r"", django_asgi_app))
    return URLRouter(routes)
