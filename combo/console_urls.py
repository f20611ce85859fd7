"""The web console (server-rendered pages under /console/), in the `console` namespace.

Each app owns its pages and lists them in its own console_urls module; this
file only mounts them (the integrations app's Webhooks pages included: one
include line here, one NavItem in its AppConfig).
"""

from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from combo import console

app_name = "console"

pages = [
    path("", RedirectView.as_view(pattern_name="console:agents", permanent=False), name="home"),
    path("", include("accounts.console_urls")),
    path("", include("agents.console_urls")),
    path("", include("integrations.console_urls")),
    path("api/", console.api_page, name="api"),
    path("api/postman.json", console.postman_collection, name="postman"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:home", permanent=False), name="root"),
    # Browsers ask for /favicon.ico on pages that name none (Django admin).
    path("favicon.ico", RedirectView.as_view(url=static("console/favicon.svg"), permanent=True)),
    path("console/", include(pages)),
]
