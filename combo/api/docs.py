"""GET /v1/docs: Swagger UI from drf-spectacular-sidecar's files, under a strict CSP.

drf-spectacular's split view serves the init script as its own request
(`/v1/docs?script=`) instead of inline, and our page template links its few
styles from a static file instead of a <style> block, so the page runs under
combo.security's policy (`script-src 'self'`, `style-src 'self'`) unchanged.
"""

from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerSplitView

from combo.api.envelope import EnvelopeRenderer


class _EnvelopedErrorsMixin:
    """Errors (405, 406, 429, ...) as `application/json` envelopes like every other /v1 error.

    drf-spectacular renders them with the view's own renderer otherwise: the
    document's `application/vnd.oai.openapi+json`, indented, or for the
    Swagger UI a bare `text/html` "405 Method Not Allowed".
    """

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400:
            request.accepted_renderer = EnvelopeRenderer()
            request.accepted_media_type = EnvelopeRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class OpenAPIDocumentView(_EnvelopedErrorsMixin, SpectacularJSONAPIView):
    """GET /v1/openapi.json. Its errors are envelopes (_EnvelopedErrorsMixin)."""


class SwaggerUIView(_EnvelopedErrorsMixin, SpectacularSwaggerSplitView):
    """GET /v1/docs. Its errors are envelopes (_EnvelopedErrorsMixin)."""

    template_name = "combo/swagger_ui.html"
