"""ASGI entry point: daphne serves HTTP (API, admin, console, SSE) through Channels.

Two kinds of request, two paths:
- the completion stream runs as a plain async ASGI app (combo.routing,
  agents.streaming): no thread per stream, disconnects seen;
- everything else is ordinary synchronous Django (DRF views, admin, console),
  run by Django's WSGI handler on a small thread pool (a2wsgi). Django's own
  ASGI handler would hop between the event loop and a thread for every
  middleware; one hop per request measured 57% more requests per second
  (bench/api_throughput.py, README).

Order matters: Django is set up before anything that imports models is loaded.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "combo.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

django_wsgi_app = get_wsgi_application()

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from combo.routing import http_application  # noqa: E402

django_app = WSGIMiddleware(django_wsgi_app, workers=settings.COMBO_HTTP_THREADS)
application = ProtocolTypeRouter({"http": http_application(django_app)})

from combo import shutdown  # noqa: E402

if shutdown.running_under_daphne():
    shutdown.install()
    # Async work started from the sync views (the health check's channel-layer
    # round trip) runs on the server's own loop, not a fresh one per request.
    from combo import eventloop  # noqa: E402

    eventloop.remember_server_loop()
    # Twisted buffers whole request bodies before the app runs: cap them there.
    from agents.knowledge.uploads import install_daphne_body_cap  # noqa: E402

    install_daphne_body_cap()
