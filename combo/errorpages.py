"""Error pages in the console's layout: 404, 405 and 500.

Django answers a 404 and a 500 through the root URLconf's `handler404` and
`handler500` (combo/urls.py names these views); a 405 has no handler (Django's
`HttpResponseNotAllowed` has an empty body), so `ConsoleErrorPageMiddleware`
gives it its page. Each page says what happened in plain words and links back
to the console, with the right status.

/v1 keeps its JSON envelope (ApiEnvelopeMiddleware replaces any non-JSON error
there) and /admin keeps Django admin's own pages: both get Django's default
views here.

The 500 page is rendered like Django's own: from a template with no request
context (no session, no database, no user), so a broken database cannot break
the error page too; it shows only the request id, which it logs beside the
path (Django's own log line, with the traceback, comes next).
"""

from __future__ import annotations

import logging

from django.http import HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.views import defaults
from django.views.decorators.csrf import requires_csrf_token

from combo.api.middleware import is_api_path

logger = logging.getLogger("combo.console")


def is_console_page(path: str) -> bool:
    """Everything Combo serves as its own HTML: not the /v1 API, not Django admin."""
    return not is_api_path(path) and path != "/admin" and not path.startswith("/admin/")


def _error_page(request, *, status: int, title: str, message: str, headers: dict | None = None):
    context = {"status": status, "title": title, "message": message}
    response = render(request, "console/error.html", context, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@requires_csrf_token
def page_not_found(request, exception):
    """handler404. Another user's object answers exactly like one that does not exist."""
    if not is_console_page(request.path):
        return defaults.page_not_found(request, exception)
    return _error_page(
        request,
        status=404,
        title="Page not found",
        message="There is nothing here, or it is not yours to see. Check the address, or go back to the console.",
    )


def method_not_allowed(request, response):
    """The page for a 405 (an empty HttpResponseNotAllowed), keeping its Allow header."""
    return _error_page(
        request,
        status=405,
        title="This page can't be used this way",
        message=(
            f"This address does not take a {request.method} request. Nothing was changed. "
            "Go back to the console and use its forms and links."
        ),
        headers={"Allow": response["Allow"]} if "Allow" in response else None,
    )


@requires_csrf_token
def server_error(request):
    """handler500, rendered without the request's context, like Django's own."""
    if not is_console_page(request.path):
        return defaults.server_error(request)
    request_id = getattr(request, "request_id", "")
    logger.error("console page %s failed; request id %s", request.path, request_id)
    try:
        template = loader.get_template("console/500.html")
        body = template.render({"request_id": request_id})
    except Exception:  # noqa: BLE001 - the error page itself failed: Django's plain one
        logger.exception("the console's 500 page could not be rendered")
        return defaults.server_error(request)
    return HttpResponseServerError(body)


class ConsoleErrorPageMiddleware:
    """Give a bare 405 outside /v1 and /admin the console's error page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 405
            and not getattr(response, "streaming", False)
            and not response.content
            and is_console_page(request.path)
        ):
            return method_not_allowed(request, response)
        return response
