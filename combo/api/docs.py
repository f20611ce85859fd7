"""GET /v1/docs: Swagger UI from drf-spectacular-sidecar's files, under a strict CSP.

drf-spectacular's split view serves the init script as its own request
(`/v1/docs?script=`) instead of inline, and our page template links its few
styles from a static file instead of a <style> block, so the page runs under
combo.security's policy (`script-src 'self'`, `style-src 'self'`) unchanged.
"""

from drf_spectacular.views import SpectacularSwaggerSplitView


class SwaggerUIView(SpectacularSwaggerSplitView):
    template_name = "combo/swagger_ui.html"
