"""ASGI entry point: daphne serves HTTP (API, admin, console, SSE) through Channels.

Order matters: get_asgi_application() sets Django up before anything that
imports models is loaded.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "combo.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from combo.routing import http_application  # noqa: E402

application = ProtocolTypeRouter({"http": http_application(django_asgi_app)})

from combo import shutdown  # noqa: E402

if shutdown.running_under_daphne():
    shutdown.install()
    # Twisted buffers whole request bodies before the app runs: cap them there.
    from agents.knowledge.uploads import install_daphne_body_cap  # noqa: E402

    install_daphne_body_cap()
