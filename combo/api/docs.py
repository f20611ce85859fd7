"""GET /v1/docs: Swagger UI from drf-spectacular-sidecar's files, under a strict CSP.

drf-spectacular's split view serves the init script as its own request
(`/v1/docs?script=`) instead of inline, and our page template links its few
styles from a static file instead of a <style> block, so the page runs under
combo.security's policy (`script-src 'self'`, `style-src 'self'`) unchanged.
"""

from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerSplitView

from combo.api.envelope import EnvelopeRenderer


class OpenAPIDocumentView(SpectacularJSONAPIView):
    """GET /v1/openapi.json. Its errors (405, 429, ...) are `application/json` envelopes like every other /v1 error.

    drf-spectacular renders them with the document's own renderer otherwise:
    `application/vnd.oai.openapi+json`, indented.
    """

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400:
            request.accepted_renderer = EnvelopeRenderer()
            request.accepted_media_type = EnvelopeRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class SwaggerUIView(SpectacularSwaggerSplitView):
    template_name = "combo/swagger_ui.html"
