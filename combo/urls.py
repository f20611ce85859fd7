"""Root URLs: the /v1 API, the OpenAPI document and docs, the console and admin."""

from django.contrib import admin
from django.urls import include, path

from combo.api.docs import OpenAPIDocumentView, SwaggerUIView
from combo.health import HealthView

v1 = [
    path("health", HealthView.as_view(), name="health"),
    path("openapi.json", OpenAPIDocumentView.as_view(), name="openapi"),
    path("docs", SwaggerUIView.as_view(url_name="openapi"), name="docs"),
    path("", include("accounts.urls")),
    path("combo/", include("agents.urls")),
    path("integrations/", include("integrations.urls")),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("admin/", admin.site.urls),
    path("", include("combo.console_urls")),
]

# Console pages' 404 and 500 in the console's layout; /v1 and /admin get Django's own.
handler404 = "combo.errorpages.page_not_found"
handler500 = "combo.errorpages.server_error"
