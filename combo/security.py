"""Content-Security-Policy for the HTML Combo serves: the console, Django admin, Swagger UI.

Every script, stylesheet, image and font comes from this origin (the console's
own static files, Django admin's, drf-spectacular-sidecar's); no CDN, no
third-party origin, no inline script. Page JavaScript talks only to this origin
(`connect-src 'self'`): the playground calls /v1 here with a short-lived JWT.

The JSON API under /v1 gets no policy (browsers do not render it), except the
Swagger UI page at /v1/docs, which is served CSP-clean by combo.api.docs.
The other security headers (nosniff, Referrer-Policy, X-Frame-Options) come
from Django's SecurityMiddleware and XFrameOptionsMiddleware (settings).
"""

from __future__ import annotations

from combo.api.middleware import is_api_path

# data: images are Swagger UI's inline SVG icons; nothing else needs a scheme.
POLICY: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
HEADER_VALUE = "; ".join(f"{name} {sources}" for name, sources in POLICY.items())

# /v1 pages a browser renders.
_API_HTML_PATHS = ("/v1/docs",)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if self._applies(request.path, response):
            response.setdefault("Content-Security-Policy", HEADER_VALUE)
        return response

    @staticmethod
    def _applies(path: str, response) -> bool:
        if not response.get("Content-Type", "").startswith("text/html"):
            return False
        return not is_api_path(path) or path.startswith(_API_HTML_PATHS)
